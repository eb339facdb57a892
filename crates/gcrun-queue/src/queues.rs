//! The three queues and pushing jobs to them.

use std::time::Duration;

use apalis_core::backend::TaskSink;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use gcrun_model::RunId;
use serde::{Deserialize, Serialize};

use crate::job::{Job, PollJob, SubmitJob, WebhookJob};

/// Queue names, hash-tagged so each queue's keys share a cluster slot, and
/// set explicitly (apalis's default is the Rust type name, which would
/// silently move the queue on a rename).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueNames {
    pub submit: String,
    pub poll: String,
    pub webhook: String,
}

impl Default for QueueNames {
    fn default() -> Self {
        Self { submit: "{gcrun:submit}".into(), poll: "{gcrun:poll}".into(), webhook: "{gcrun:webhook}".into() }
    }
}

impl QueueNames {
    pub fn all(&self) -> [&str; 3] {
        [&self.submit, &self.poll, &self.webhook]
    }
}

/// Backend settings shared by the three queues.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub names: QueueNames,
    pub heartbeat: Duration,
    pub missed_heartbeats: usize,
    pub batch_size: usize,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self { names: QueueNames::default(), heartbeat: Duration::from_secs(5), missed_heartbeats: 3, batch_size: 10 }
    }
}

impl QueueSettings {
    fn config(&self, queue: &str) -> Config {
        Config::default()
            .queue(queue)
            .heartbeat_interval(self.heartbeat)
            .missed_heartbeats(self.missed_heartbeats)
            .batch_size(self.batch_size.max(1))
    }
}

/// The three queues. Cheap to clone; used by producers and workers alike.
#[derive(Debug, Clone)]
pub struct Queues {
    pub submit: RedisStorage<SubmitJob>,
    pub poll: RedisStorage<PollJob>,
    pub webhook: RedisStorage<WebhookJob>,
    pub names: QueueNames,
    pub(crate) conn: ConnectionManager,
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

impl Queues {
    pub fn new(conn: ConnectionManager, settings: &QueueSettings) -> Self {
        let n = &settings.names;
        Self {
            submit: RedisStorage::new(conn.clone()).with_config(settings.config(&n.submit)),
            poll: RedisStorage::new(conn.clone()).with_config(settings.config(&n.poll)),
            webhook: RedisStorage::new(conn.clone()).with_config(settings.config(&n.webhook)),
            names: n.clone(),
            conn,
        }
    }

    /// Pushes the submit job of a run, due after `after`.
    pub async fn push_submit(&self, run: RunId, after: Duration) -> Result<(), PushError> {
        self.push(Job::Submit { run, after }).await
    }

    /// Pushes the submit jobs of many runs, due now, in one batch.
    pub async fn push_submits(&self, runs: &[RunId]) -> Result<(), PushError> {
        let jobs: Vec<SubmitJob> = runs.iter().map(|r| SubmitJob { run: r.to_string() }).collect();
        let mut storage = self.submit.clone();
        storage
            .push_bulk(jobs)
            .await
            .map_err(|e| PushError { queue: self.names.submit.clone(), message: e.to_string() })
    }

    /// Pushes a job. A poll or webhook job whose id the queue already holds
    /// is ignored: pushing the same step twice makes one job.
    pub async fn push(&self, job: Job) -> Result<(), PushError> {
        let (id, after) = (job.id(), job.after());
        match job {
            Job::Submit { run, .. } => {
                push(self.submit.clone(), &self.names.submit, SubmitJob { run: run.to_string() }, after, id).await
            }
            Job::Poll { run, attempt, .. } => {
                push(self.poll.clone(), &self.names.poll, PollJob { run: run.to_string(), attempt }, after, id).await
            }
            Job::Webhook { run, attempt, .. } => {
                let payload = WebhookJob { run: run.to_string(), attempt };
                push(self.webhook.clone(), &self.names.webhook, payload, after, id).await
            }
        }
    }
}

async fn push<T>(
    mut storage: RedisStorage<T>,
    queue: &str,
    job: T,
    after: Duration,
    id: Option<String>,
) -> Result<(), PushError>
where
    T: Serialize + for<'de> Deserialize<'de> + Unpin + Send + Sync + 'static,
{
    let mut builder = TaskBuilder::new(job).run_after(after.min(MAX_DELAY));
    if let Some(id) = id {
        builder = builder.task_id(TaskId::from_string(&id));
    }
    storage.push_task(builder.build()).await.map_err(|e| PushError { queue: queue.to_string(), message: e.to_string() })
}
