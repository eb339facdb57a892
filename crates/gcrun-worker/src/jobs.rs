//! The job payloads, their queues, and the apalis handlers that wrap the
//! plain handlers in [`crate::handlers`].
//!
//! Payloads carry only ids: the truth lives in the run record, so a job
//! re-delivered after a crash reads the current state, never a stale copy.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{AbortError, BoxDynError, Data, TaskBuilder, TaskId, TaskSink};
use apalis_redis::{Config, ConnectionManager, RedisStorage};
use gcrun_model::RunId;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::handlers::{self, Ctx, FollowUp, Step};

/// Start (or resume) a run. `run` is a string so that a malformed id is
/// dead-lettered with a reason instead of failing to decode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubmitJob {
    pub run: String,
}

/// Poll a submitted run; `attempt` drives the backoff and deduplication.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PollJob {
    pub run: String,
    #[serde(default)]
    pub attempt: u32,
}

/// Deliver a run's completion webhook.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookJob {
    pub run: String,
    #[serde(default)]
    pub attempt: u32,
}

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

/// apalis backend settings shared by the three queues.
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
}

/// A push failed (Redis unreachable): retryable by the caller.
#[derive(Debug, thiserror::Error)]
#[error("pushing a job to {queue}: {message}")]
pub struct PushError {
    pub queue: String,
    pub message: String,
}

impl Queues {
    pub fn new(conn: ConnectionManager, settings: &QueueSettings) -> Self {
        let n = &settings.names;
        Self {
            submit: RedisStorage::new(conn.clone()).with_config(settings.config(&n.submit)),
            poll: RedisStorage::new(conn.clone()).with_config(settings.config(&n.poll)),
            webhook: RedisStorage::new(conn).with_config(settings.config(&n.webhook)),
            names: n.clone(),
        }
    }

    /// Pushes the submit job of a run, due now.
    pub async fn push_submit(&self, run: RunId, after: Duration) -> Result<(), PushError> {
        let job = SubmitJob { run: run.to_string() };
        push(self.submit.clone(), &self.names.submit, job, after, None).await
    }

    /// Pushes the submit jobs of many runs in one batch.
    pub async fn push_submits(&self, runs: &[RunId]) -> Result<(), PushError> {
        let jobs: Vec<SubmitJob> = runs.iter().map(|r| SubmitJob { run: r.to_string() }).collect();
        let mut storage = self.submit.clone();
        storage
            .push_bulk(jobs)
            .await
            .map_err(|e| PushError { queue: self.names.submit.clone(), message: e.to_string() })
    }

    /// Pushes a follow-up job. Poll and webhook jobs get deterministic ids
    /// (`p:<run>:<generation>:<attempt>`), which apalis-redis ignores when
    /// it already holds them: pushing the same step twice makes one job.
    pub async fn push(&self, follow: FollowUp) -> Result<(), PushError> {
        match follow {
            FollowUp::Submit { run, after } => self.push_submit(run, after).await,
            FollowUp::Poll { run, generation, attempt, after } => {
                let id = format!("p:{run}:{generation}:{attempt}");
                push(self.poll.clone(), &self.names.poll, PollJob { run: run.to_string(), attempt }, after, Some(id))
                    .await
            }
            FollowUp::Webhook { run, generation, attempt, after } => {
                let id = format!("w:{run}:{generation}:{attempt}");
                let job = WebhookJob { run: run.to_string(), attempt };
                push(self.webhook.clone(), &self.names.webhook, job, after, Some(id)).await
            }
        }
    }
}

/// The longest delay a job is scheduled with (a guard against absurd
/// server-requested waits overflowing the scheduler's clock arithmetic).
const MAX_DELAY: Duration = Duration::from_secs(86_400);

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

fn parse_run(raw: &str) -> Result<RunId, BoxDynError> {
    raw.parse::<RunId>()
        .map_err(|e| AbortError::new(format!("malformed job: run id `{raw}` is not a UUID: {e}")).into())
}

/// Applies a handler's decision: push follow-ups, or abort the job (it then
/// lands in the queue's dead set with the reason as its result).
async fn conclude(step: Result<Step, handlers::HandlerError>, queues: &Queues) -> Result<(), BoxDynError> {
    // A record that is not what gcrun wrote will not get better by retrying.
    let step = match step {
        Err(handlers::HandlerError::Store(gcrun_store::StoreError::Corrupt { run, detail })) => {
            Step::Abort(format!("run {run} has a corrupt record: {detail}"))
        }
        other => other?,
    };
    match step {
        Step::Done(follow) => {
            for f in follow {
                queues.push(f).await?;
            }
            Ok(())
        }
        Step::Abort(reason) => {
            tracing::warn!(%reason, "job aborted to the dead set");
            Err(AbortError::new(reason).into())
        }
    }
}

pub(crate) async fn submit_job(job: SubmitJob, ctx: Data<Arc<Ctx>>, queues: Data<Queues>) -> Result<(), BoxDynError> {
    let run = parse_run(&job.run)?;
    let span = tracing::info_span!("submit", %run);
    conclude(handlers::submit(&ctx, run).instrument(span).await, &queues).await
}

pub(crate) async fn poll_job(job: PollJob, ctx: Data<Arc<Ctx>>, queues: Data<Queues>) -> Result<(), BoxDynError> {
    let run = parse_run(&job.run)?;
    let span = tracing::info_span!("poll", %run, attempt = job.attempt);
    conclude(handlers::poll(&ctx, run, job.attempt).instrument(span).await, &queues).await
}

pub(crate) async fn webhook_job(job: WebhookJob, ctx: Data<Arc<Ctx>>, queues: Data<Queues>) -> Result<(), BoxDynError> {
    let run = parse_run(&job.run)?;
    let span = tracing::info_span!("webhook", %run, attempt = job.attempt);
    conclude(handlers::deliver_webhook(&ctx, run, job.attempt).instrument(span).await, &queues).await
}
