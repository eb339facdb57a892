//! The three queues as producers and operators see them: pushing jobs,
//! depths, dead jobs and retention, over the [`Engine`].

use std::time::Duration;

use gcrun_model::{RunId, Tenant};
use gcrun_redis::{Conn, Subscriber};
use serde::Serialize;

use crate::engine::{DeadEntry, Engine, EngineLimits, Queue};
use crate::job::Job;

/// The queues' names (the engine's keys are `<tenant tag>:q:<name>:*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueNames {
    pub submit: String,
    pub poll: String,
    pub webhook: String,
}

impl Default for QueueNames {
    fn default() -> Self {
        Self {
            submit: Queue::Submit.name().into(),
            poll: Queue::Poll.name().into(),
            webhook: Queue::Webhook.name().into(),
        }
    }
}

impl QueueNames {
    pub fn all(&self) -> [&str; 3] {
        [&self.submit, &self.poll, &self.webhook]
    }
}

/// How the queues' jobs are leased and fetched.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// How long a job is leased to a worker; renewed while it runs. A
    /// worker that dies has its jobs run elsewhere after at most this long.
    pub lease: Duration,
    /// Most jobs leased per fetch.
    pub batch_size: usize,
    /// A job leased this many times without an end goes to the dead set.
    pub max_deliveries: u64,
    pub limits: EngineLimits,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self { lease: Duration::from_secs(30), batch_size: 32, max_deliveries: 25, limits: EngineLimits::default() }
    }
}

/// How many jobs a queue holds in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueDepth {
    pub ready: u64,
    pub scheduled: u64,
    /// Leased to a worker now.
    pub in_flight: u64,
    /// Finished ids still remembered (they dedupe pushes).
    pub done: u64,
    pub dead: u64,
    /// How long the oldest ready job has waited for a worker, in ms.
    pub oldest_ready_ms: Option<u64>,
    /// An operator paused the queue: who, why and when (JSON).
    pub paused: Option<String>,
}

impl QueueDepth {
    /// Jobs not yet finished (what a drain waits for).
    pub fn pending(&self) -> u64 {
        self.ready + self.scheduled + self.in_flight
    }
}

/// A push failed (Redis unreachable): retryable by the caller.
#[derive(Debug, thiserror::Error)]
#[error("pushing a job to {queue}: {message}")]
pub struct PushError {
    pub queue: String,
    pub message: String,
}

/// The longest delay a job is scheduled with (a guard against absurd
/// server-requested waits overflowing the scheduler's clock arithmetic).
pub const MAX_DELAY: Duration = Duration::from_secs(86_400);

/// The three queues. Cheap to clone; used by producers and workers alike.
#[derive(Debug, Clone)]
pub struct Queues {
    engine: Engine,
    pub names: QueueNames,
    pub settings: QueueSettings,
}

fn queue_named(name: &str) -> Result<Queue, redis::RedisError> {
    Queue::named(name)
        .ok_or_else(|| redis::RedisError::from((redis::ErrorKind::Client, "no such queue", name.to_string())))
}

impl Queues {
    /// The default tenant's queues.
    pub fn new(conn: Conn, settings: &QueueSettings) -> Self {
        Self::for_tenant(conn, settings, &Tenant::default())
    }

    /// `tenant`'s queues (under its hash tag, with its store's records).
    pub fn for_tenant(conn: Conn, settings: &QueueSettings, tenant: &Tenant) -> Self {
        Self {
            engine: Engine::for_tenant(conn, settings.limits, tenant),
            names: QueueNames::default(),
            settings: settings.clone(),
        }
    }

    /// The same Redis and settings, another tenant's queues.
    pub fn of_tenant(&self, tenant: &Tenant) -> Self {
        Self::for_tenant(self.engine.connection(), &self.settings, tenant)
    }

    /// Jobs left in the queue layout of releases before the engine
    /// (apalis-redis: `{gcrun:<queue>}:*`), by queue, with how many each
    /// holds. A worker of this release must not start on them: they would
    /// never run (nothing reads that layout any more), and the runs they
    /// belong to would wait for the sweeper.
    pub async fn old_layout_jobs(&self) -> Result<Vec<(String, u64)>, redis::RedisError> {
        let mut conn = self.engine.connection();
        let mut out = Vec::new();
        for q in Queue::ALL {
            let old = format!("{{gcrun:{}}}", q.name());
            // Jobs still to run: scheduled, released, or held by a worker
            // (payloads of finished jobs linger in `:data`; they do not count).
            let (scheduled, active): (u64, u64) = redis::pipe()
                .cmd("ZCARD")
                .arg(format!("{old}:scheduled"))
                .cmd("LLEN")
                .arg(format!("{old}:active"))
                .query_async(&mut conn)
                .await?;
            let mut in_flight = 0;
            let mut cursor: u64 = 0;
            // A keyless SCAN reaches one node of a Cluster, so there the
            // check counts the scheduled and active jobs (routed by key)
            // and not the in-flight sets.
            while !conn.is_cluster() {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{old}:inflight:*"))
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut conn)
                    .await?;
                for key in keys {
                    let n: u64 = redis::cmd("SCARD").arg(&key).query_async(&mut conn).await?;
                    in_flight += n;
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
            let held = scheduled + active + in_flight;
            if held > 0 {
                out.push((old, held));
            }
        }
        Ok(out)
    }

    /// Starts listening for ready jobs announced by any process (see
    /// [`Engine::listen`]), on a connection of its own from `subscriber`.
    pub fn listen(&self, subscriber: Subscriber) -> tokio::task::JoinHandle<()> {
        self.engine.listen(subscriber)
    }

    /// The engine under the queues (for the workers' backends).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Pushes the submit job of a run, due after `after`.
    pub async fn push_submit(&self, run: RunId, after: Duration) -> Result<(), PushError> {
        self.push(Job::Submit { run, after }).await
    }

    /// Pushes the submit jobs of many runs, due now.
    pub async fn push_submits(&self, runs: &[RunId]) -> Result<(), PushError> {
        let jobs: Vec<Job> = runs.iter().map(|&run| Job::Submit { run, after: Duration::ZERO }).collect();
        self.push_all(&jobs).await
    }

    /// Pushes a job. A poll or webhook job whose id the queue holds is
    /// ignored: pushing the same step twice makes one job.
    pub async fn push(&self, job: Job) -> Result<(), PushError> {
        self.push_all(std::slice::from_ref(&job)).await
    }

    /// Pushes jobs, in as few scripts as the engine's limits allow.
    pub async fn push_all(&self, jobs: &[Job]) -> Result<(), PushError> {
        self.engine.push(jobs).await.map(|_| ()).map_err(|e| PushError {
            queue: jobs.first().map_or("-", |j| j.queue().name()).to_string(),
            message: e.to_string(),
        })
    }

    /// Counts one queue's jobs by state, with the oldest ready job's age.
    pub async fn depth(&self, queue: &str) -> Result<QueueDepth, redis::RedisError> {
        let q = queue_named(queue)?;
        let d = self.engine.depth(q).await?;
        let paused = self.engine.paused(q).await?;
        Ok(QueueDepth {
            ready: d.ready,
            scheduled: d.scheduled,
            in_flight: d.leased,
            done: d.done,
            dead: d.dead,
            oldest_ready_ms: d.oldest_ready_ms,
            paused,
        })
    }

    /// Pauses a queue (submit, poll or webhook): workers lease none of its
    /// jobs until it is resumed; nothing is lost. `note` says who and why.
    pub async fn pause(&self, queue: &str, note: &str) -> Result<(), redis::RedisError> {
        self.engine.pause(queue_named(queue)?, note).await
    }

    /// Resumes a paused queue; `false` when it was not paused.
    pub async fn resume(&self, queue: &str) -> Result<bool, redis::RedisError> {
        self.engine.resume(queue_named(queue)?).await
    }

    /// A page of a queue's dead set, oldest first, with each job's reason.
    pub async fn dead_jobs(
        &self,
        queue: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<DeadEntry>, redis::RedisError> {
        self.engine.dead(queue_named(queue)?, offset, limit).await
    }

    /// Runs the listed dead jobs again under fresh ids; returns how many
    /// were still dead and went back.
    pub async fn requeue_dead(&self, queue: &str, ids: &[String]) -> Result<usize, redis::RedisError> {
        self.engine.requeue_dead(queue_named(queue)?, ids).await
    }

    /// Drops the listed dead jobs; returns how many were still dead.
    pub async fn purge_dead(&self, queue: &str, ids: &[String]) -> Result<usize, redis::RedisError> {
        self.engine.purge_dead(queue_named(queue)?, ids).await
    }

    /// Forgets finished ids and dead jobs past their retention, a bounded
    /// slice per call; returns how many.
    pub async fn trim(
        &self,
        queue: &str,
        done_retention: Duration,
        dead_retention: Duration,
    ) -> Result<usize, redis::RedisError> {
        self.engine.trim(queue_named(queue)?, done_retention, dead_retention).await
    }
}
