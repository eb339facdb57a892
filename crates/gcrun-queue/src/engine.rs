//! The queue engine's storage: gcrun's own queues on Redis, one Lua script
//! per operation (`lua/`, KEYS and ARGV named at the top of each), every
//! key declared, bounded work per call. It is what replaces apalis-redis
//! under the apalis runtime (see ARCHITECTURE.md): millisecond schedules,
//! promotion of due jobs in bounded slices (no backlog size can wedge a
//! queue), per-job leases instead of worker heartbeats, an acknowledgement
//! that pushes the step's successors in the same script, deterministic ids
//! that dedupe pushes for a retention window, and a dead set with reasons.
//!
//! Every time in the scripts is Redis's own (`TIME`), never a worker's
//! clock: a lease or a due time means the same to every worker whatever
//! their clocks say, and a call that waited out a reconnect cannot write a
//! lease that has already lapsed.
//!
//! Keys of queue `q` (all under the `{gcrun}` tag, so a step's script may
//! touch the three queues and, later, the run record in one slot):
//! `{gcrun}:q:<q>:jobs` (hash id → payload), `:scheduled` (zset by due
//! ms), `:ready` (list), `:leases` (zset by expiry ms), `:deliveries`
//! (hash id → times leased), `:done` (zset by done ms), `:dead` (zset by
//! time) and `:reasons` (hash id → why it died).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;
use tokio::sync::Notify;

use crate::job::{Job, PAYLOAD_VERSION, PollJob, SubmitJob, WebhookJob};

static PUSH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/push.lua")));
static FETCH: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/fetch.lua")));
static ACK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/ack.lua")));
static RETRY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/retry.lua")));
static KILL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/kill.lua")));
static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/renew.lua")));
static RECOVER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/recover.lua")));
static TRIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/trim.lua")));

/// The three queues, in the order the scripts index them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Queue {
    Submit = 0,
    Poll = 1,
    Webhook = 2,
}

impl Queue {
    pub const ALL: [Queue; 3] = [Queue::Submit, Queue::Poll, Queue::Webhook];

    pub fn name(self) -> &'static str {
        match self {
            Queue::Submit => "submit",
            Queue::Poll => "poll",
            Queue::Webhook => "webhook",
        }
    }

    fn key(self, part: &str) -> String {
        format!("{{gcrun}}:q:{}:{part}", self.name())
    }

    /// The pub/sub channel on which the scripts announce ready jobs.
    pub fn wake_channel(self) -> String {
        self.key("wake")
    }

    /// The keys a push into this queue touches, in `push.lua`'s order.
    fn push_keys(self) -> [String; 5] {
        [self.key("jobs"), self.key("scheduled"), self.key("ready"), self.key("done"), self.key("dead")]
    }
}

impl Job {
    /// The queue this job goes to.
    pub fn queue(&self) -> Queue {
        match self {
            Job::Submit { .. } => Queue::Submit,
            Job::Poll { .. } => Queue::Poll,
            Job::Webhook { .. } => Queue::Webhook,
        }
    }

    /// The id the engine stores it under: the deterministic one, or a fresh
    /// one for a submit job.
    pub fn engine_id(&self) -> String {
        self.id().unwrap_or_else(|| format!("s:{}:{}", self.run(), uuid::Uuid::new_v4().simple()))
    }

    /// The payload as stored (JSON of the job's payload type).
    pub fn payload(&self) -> String {
        let run = self.run().to_string();
        let encoded = match *self {
            Job::Submit { .. } => serde_json::to_string(&SubmitJob { v: PAYLOAD_VERSION, run }),
            Job::Poll { attempt, .. } => serde_json::to_string(&PollJob { v: PAYLOAD_VERSION, run, attempt }),
            Job::Webhook { attempt, .. } => serde_json::to_string(&WebhookJob { v: PAYLOAD_VERSION, run, attempt }),
        };
        encoded.unwrap_or_default()
    }
}

/// Limits of one engine call. Every one bounds the work a script does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineLimits {
    /// Due jobs promoted from scheduled to ready per fetch.
    pub promote_per_fetch: usize,
    /// Jobs pushed per script call (longer lists are split).
    pub push_per_call: usize,
    /// Expired leases recovered, or finished ids forgotten, per call.
    pub sweep_per_call: usize,
}

impl Default for EngineLimits {
    fn default() -> Self {
        Self { promote_per_fetch: 1_000, push_per_call: 500, sweep_per_call: 1_000 }
    }
}

/// A job's lease: which job, and which delivery of it holds the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub queue: Queue,
    pub id: String,
    /// How many times it has been leased, this time included: the lease's
    /// name, and what a poison job's cap counts.
    pub delivery: u64,
}

/// A job leased to this worker, with its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    pub lease: Lease,
    pub payload: String,
}

/// What a fetch brought.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fetched {
    pub jobs: Vec<Leased>,
    /// How long until the earliest scheduled job is due, if any: how long
    /// an idle worker may wait before it must look again.
    pub next_due_in: Option<Duration>,
}

/// How many jobs a queue holds in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineDepth {
    pub ready: u64,
    pub scheduled: u64,
    pub leased: u64,
    pub dead: u64,
    /// Finished ids still remembered (they dedupe pushes).
    pub done: u64,
}

/// The engine's storage, over one self-reconnecting connection. Clones
/// share the connection and the wake-ups: a push from this process wakes
/// this process's idle worker of that queue at once.
#[derive(Clone)]
pub struct Engine {
    conn: ConnectionManager,
    limits: EngineLimits,
    wake: Arc<[Notify; 3]>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("limits", &self.limits).finish_non_exhaustive()
    }
}

impl Engine {
    pub fn new(conn: ConnectionManager, limits: EngineLimits) -> Self {
        Self { conn, limits, wake: Arc::new([Notify::new(), Notify::new(), Notify::new()]) }
    }

    pub(crate) fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Completes when a job was pushed to `queue` from this process (a
    /// permit is kept if nobody waits, so a push between two waits counts).
    pub async fn pushed(&self, queue: Queue) {
        self.wake[queue as usize].notified().await;
    }

    /// Listens for the scripts' announcements of ready jobs (pushed by any
    /// process) on a pub/sub connection of its own, and wakes this
    /// process's idle workers of that queue. Reconnects after a Redis
    /// error; a missed announcement only costs the worker's next look.
    pub fn listen(&self, client: redis::Client) -> tokio::task::JoinHandle<()> {
        let wake = self.wake.clone();
        tokio::spawn(async move {
            loop {
                match subscribe(&client).await {
                    Ok(mut messages) => {
                        while let Some(msg) = futures_util::StreamExt::next(&mut messages).await {
                            let channel = msg.get_channel_name();
                            if let Some(q) = Queue::ALL.into_iter().find(|q| q.wake_channel() == channel) {
                                wake[q as usize].notify_one();
                            }
                        }
                        tracing::warn!("wake-up subscription ended; subscribing again");
                    }
                    Err(e) => tracing::warn!(error = %e, "wake-up subscription failed; trying again"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    fn woke(&self, queues: impl IntoIterator<Item = Queue>) {
        for q in queues {
            self.wake[q as usize].notify_one();
        }
    }

    /// Pushes jobs (each due `after` from `now_ms`); returns how many were
    /// new. Ids the queue holds (pending, leased, done within retention,
    /// dead) are skipped.
    pub async fn push(&self, jobs: &[Job]) -> Result<usize, redis::RedisError> {
        let mut added = 0;
        for queue in Queue::ALL {
            let mine: Vec<&Job> = jobs.iter().filter(|j| j.queue() == queue).collect();
            for chunk in mine.chunks(self.limits.push_per_call.max(1)) {
                let mut inv = PUSH.prepare_invoke();
                for key in queue.push_keys() {
                    inv.key(key);
                }
                inv.arg(queue.wake_channel());
                for job in chunk {
                    inv.arg(job.engine_id()).arg(job.payload()).arg(delay_ms(job.after()));
                }
                let n: usize = inv.invoke_async(&mut self.conn.clone()).await?;
                added += n;
            }
            if !mine.is_empty() {
                self.woke([queue]);
            }
        }
        Ok(added)
    }

    /// Pushes one payload as it is, unchecked (for operators' tools and
    /// tests that need a job no step would write). `Ok(false)`: the id is
    /// taken.
    pub async fn push_raw(&self, queue: Queue, id: &str, payload: &str) -> Result<bool, redis::RedisError> {
        let mut inv = PUSH.prepare_invoke();
        for key in queue.push_keys() {
            inv.key(key);
        }
        let n: usize =
            inv.arg(queue.wake_channel()).arg(id).arg(payload).arg(0).invoke_async(&mut self.conn.clone()).await?;
        self.woke([queue]);
        Ok(n == 1)
    }

    /// Promotes due jobs (a bounded slice) and leases up to `batch` ready
    /// ones for `lease`.
    pub async fn fetch(&self, queue: Queue, batch: usize, lease: Duration) -> Result<Fetched, redis::RedisError> {
        let reply: Vec<redis::Value> = FETCH
            .key(queue.key("scheduled"))
            .key(queue.key("ready"))
            .key(queue.key("leases"))
            .key(queue.key("jobs"))
            .key(queue.key("deliveries"))
            .arg(self.limits.promote_per_fetch.max(1))
            .arg(batch.max(1))
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let mut values = reply.into_iter();
        let next_due: i64 = values.next().map(redis::from_redis_value).transpose()?.unwrap_or(-1);
        let mut jobs = Vec::new();
        while let (Some(id), Some(payload), Some(delivery)) = (values.next(), values.next(), values.next()) {
            let lease = Lease { queue, id: redis::from_redis_value(id)?, delivery: redis::from_redis_value(delivery)? };
            jobs.push(Leased { lease, payload: redis::from_redis_value(payload)? });
        }
        Ok(Fetched { jobs, next_due_in: u64::try_from(next_due).ok().map(Duration::from_millis) })
    }

    /// Finishes `job` and pushes its successors in the same script.
    /// `Ok(false)`: this copy's lease had lapsed and the job was leased
    /// again; nothing was changed (the other copy will finish it).
    pub async fn ack(&self, job: &Lease, successors: &[Job]) -> Result<bool, redis::RedisError> {
        let q = job.queue;
        let mut keys = vec![q.key("leases"), q.key("jobs"), q.key("deliveries"), q.key("done")];
        for target in Queue::ALL {
            keys.extend(target.push_keys());
        }
        let mut inv = ACK.prepare_invoke();
        for key in keys {
            inv.key(key);
        }
        inv.arg(&job.id).arg(job.delivery);
        for target in Queue::ALL {
            inv.arg(target.wake_channel());
        }
        for s in successors {
            inv.arg(s.queue() as u8).arg(s.engine_id()).arg(s.payload()).arg(delay_ms(s.after()));
        }
        let n: i64 = inv.invoke_async(&mut self.conn.clone()).await?;
        self.woke(successors.iter().map(Job::queue));
        Ok(n == 1)
    }

    /// Gives `job` back, due again after `after` (the step hit an
    /// infrastructure error). `Ok(false)`: the lease was not this copy's.
    pub async fn retry(&self, job: &Lease, after: Duration) -> Result<bool, redis::RedisError> {
        self.give_back(job, after, false).await
    }

    /// Gives back a job that did not run at all (at shutdown, or a payload
    /// of a newer release): its delivery does not count towards the
    /// poison-job cap.
    pub async fn release(&self, job: &Lease, after: Duration) -> Result<bool, redis::RedisError> {
        self.give_back(job, after, true).await
    }

    async fn give_back(&self, job: &Lease, after: Duration, unrun: bool) -> Result<bool, redis::RedisError> {
        let q = job.queue;
        let n: i64 = RETRY
            .key(q.key("leases"))
            .key(q.key("deliveries"))
            .key(q.key("scheduled"))
            .arg(&job.id)
            .arg(job.delivery)
            .arg(delay_ms(after))
            .arg(if unrun { "1" } else { "0" })
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(n == 1)
    }

    /// Ends `job` in the dead set with `reason`.
    pub async fn kill(&self, job: &Lease, reason: &str) -> Result<bool, redis::RedisError> {
        let q = job.queue;
        let n: i64 = KILL
            .key(q.key("leases"))
            .key(q.key("deliveries"))
            .key(q.key("dead"))
            .key(q.key("reasons"))
            .key(q.key("ready"))
            .key(q.key("scheduled"))
            .arg(&job.id)
            .arg(job.delivery)
            .arg(reason)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(n == 1)
    }

    /// Extends `job`'s lease to `lease` from now, if this copy holds it.
    pub async fn renew(&self, job: &Lease, lease: Duration) -> Result<bool, redis::RedisError> {
        let q = job.queue;
        let n: i64 = RENEW
            .key(q.key("leases"))
            .key(q.key("deliveries"))
            .arg(&job.id)
            .arg(job.delivery)
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(n == 1)
    }

    /// Returns jobs whose lease expired to ready (a bounded slice); how many.
    pub async fn recover(&self, queue: Queue) -> Result<usize, redis::RedisError> {
        RECOVER
            .key(queue.key("leases"))
            .key(queue.key("ready"))
            .arg(self.limits.sweep_per_call.max(1))
            .invoke_async(&mut self.conn.clone())
            .await
    }

    /// Forgets finished ids, and dead jobs, older than their retention (a
    /// bounded slice of each); how many.
    pub async fn trim(
        &self,
        queue: Queue,
        done_retention: Duration,
        dead_retention: Duration,
    ) -> Result<usize, redis::RedisError> {
        let mut forgotten = 0;
        for (set, keep) in [("done", done_retention), ("dead", dead_retention)] {
            let n: usize = TRIM
                .key(queue.key(set))
                .key(queue.key("jobs"))
                .key(queue.key("reasons"))
                .arg(keep.as_millis() as u64)
                .arg(self.limits.sweep_per_call.max(1))
                .invoke_async(&mut self.conn.clone())
                .await?;
            forgotten += n;
        }
        Ok(forgotten)
    }

    /// How many jobs `queue` holds in each state.
    pub async fn depth(&self, queue: Queue) -> Result<EngineDepth, redis::RedisError> {
        let (ready, scheduled, leased, dead, done): (u64, u64, u64, u64, u64) = redis::pipe()
            .cmd("LLEN")
            .arg(queue.key("ready"))
            .cmd("ZCARD")
            .arg(queue.key("scheduled"))
            .cmd("ZCARD")
            .arg(queue.key("leases"))
            .cmd("ZCARD")
            .arg(queue.key("dead"))
            .cmd("ZCARD")
            .arg(queue.key("done"))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(EngineDepth { ready, scheduled, leased, dead, done })
    }

    /// Dead jobs, oldest first: (id, payload, reason).
    pub async fn dead(&self, queue: Queue, limit: usize) -> Result<Vec<(String, String, String)>, redis::RedisError> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> =
            redis::cmd("ZRANGE").arg(queue.key("dead")).arg(0).arg(limit.max(1) - 1).query_async(&mut conn).await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let (payload, reason): (Option<String>, Option<String>) = redis::pipe()
                .cmd("HGET")
                .arg(queue.key("jobs"))
                .arg(&id)
                .cmd("HGET")
                .arg(queue.key("reasons"))
                .arg(&id)
                .query_async(&mut conn)
                .await?;
            out.push((id, payload.unwrap_or_default(), reason.unwrap_or_default()));
        }
        Ok(out)
    }
}

async fn subscribe(client: &redis::Client) -> Result<redis::aio::PubSubStream, redis::RedisError> {
    let mut pubsub = client.get_async_pubsub().await?;
    for q in Queue::ALL {
        pubsub.subscribe(q.wake_channel()).await?;
    }
    Ok(pubsub.into_on_message())
}

/// A job's delay in ms (capped, so an absurd server-requested wait cannot
/// overflow a clock). The scripts add it to Redis's own time.
fn delay_ms(after: Duration) -> u64 {
    after.min(crate::queues::MAX_DELAY).as_millis() as u64
}
