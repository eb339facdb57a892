//! How runs get into gcrun.
//!
//! - [`Producer`]: the Rust API. `enqueue` checks a request at the door
//!   (shape, sizes, flavor fields, webhook URL; every violation at once),
//!   records the run (an idempotency key returns the existing run) and
//!   pushes its submit job. `enqueue_batch` does the same for many.
//! - [`ingest`]: the HTTP service in front of it (`POST /v1/runs`,
//!   `POST /v1/runs/batch`, `GET /v1/runs/{id}`, `GET /v1/openapi.json`)
//!   with bearer-token auth and a body size limit.
//! - [`api`]: the ingest API's typed bodies and its generated OpenAPI
//!   document.
//! - [`operator`]: what operators do to runs (requeue runs and webhooks,
//!   purge), as library calls the CLI only parses and prints around.

pub mod api;
pub mod atomic;
pub mod ingest;
pub mod operator;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gcrun_model::{RequestLimits, RunId, RunRequest, Violations};
use gcrun_queue::{Job, PushError, Queues};
use gcrun_store::{RunUpdate, Store, StoreError, WriteOutcome};
use serde::Serialize;
use serde_json::Value;

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub limits: RequestLimits,
    /// How long a run may take from acceptance before it is `timed_out`.
    pub run_deadline: Duration,
    /// Most runs in one batch call.
    pub max_batch: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self { limits: RequestLimits::default(), run_deadline: Duration::from_secs(3_600), max_batch: 1_000 }
    }
}

/// What enqueueing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Enqueued {
    pub run_id: RunId,
    /// The idempotency key named an existing run; nothing new was queued.
    pub existing: bool,
}

/// Why a request was not enqueued: the caller's mistake, or ours.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// The request is invalid; every violation is listed. Not retryable.
    #[error("invalid run request: {0}")]
    Invalid(Violations),
    /// Redis failed: retryable, and safe to retry with an idempotency key.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] PushError),
}

/// Enqueues runs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Producer {
    store: Store,
    queues: Queues,
    config: ProducerConfig,
}

/// The wall clock in unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Producer {
    pub fn new(store: Store, queues: Queues, config: ProducerConfig) -> Self {
        Self { store, queues, config }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    /// Checks a JSON request document and enqueues it.
    pub async fn enqueue_value(&self, doc: &Value) -> Result<Enqueued, ProducerError> {
        let request = RunRequest::parse(doc, &self.config.limits).map_err(ProducerError::Invalid)?;
        self.enqueue(&request).await
    }

    /// Records the run and pushes its submit job, in one script (see
    /// [`atomic`]). With an idempotency key already in use, returns the
    /// existing run; if that run's job was never pushed (a record written
    /// by a release before the two were one script), pushes it now.
    pub async fn enqueue(&self, request: &RunRequest) -> Result<Enqueued, ProducerError> {
        let now = now_ms();
        let deadline = now + self.config.run_deadline.as_millis() as u64;
        let id = RunId::new();
        let write = self.store.prepare_create(id, request, now, deadline, true);
        let job = Job::Submit { run: id, after: Duration::ZERO };
        match atomic::write_then_push(&mut self.store.connection(), &self.queues, &write, &job).await? {
            WriteOutcome::Existing(existing) => {
                self.push_if_never_pushed(existing).await?;
                Ok(Enqueued { run_id: existing, existing: true })
            }
            _ => Ok(Enqueued { run_id: id, existing: false }),
        }
    }

    async fn push_if_never_pushed(&self, id: RunId) -> Result<(), ProducerError> {
        if let Some(rec) = self.store.get_run(&id).await? {
            if !rec.enqueued && rec.status == gcrun_model::RunStatus::Accepted {
                self.queues.push_submit(id, Duration::ZERO).await?;
                self.store.update(&id, &RunUpdate::enqueued()).await?;
            }
        }
        Ok(())
    }

    /// Checks every document first, then records the valid ones and pushes
    /// their submit jobs: each run and its job in one script, the scripts
    /// pipelined in chunks (one round trip per 500 runs). A Redis error
    /// mid-batch leaves every run either recorded with its job or not at
    /// all; the batch can be sent again (idempotency keys make that safe).
    /// Results come back in input order.
    pub async fn enqueue_batch(&self, docs: &[Value]) -> Result<Vec<Result<Enqueued, Violations>>, ProducerError> {
        let now = now_ms();
        let deadline = now + self.config.run_deadline.as_millis() as u64;
        let mut results: Vec<Result<Enqueued, Violations>> = Vec::with_capacity(docs.len());
        let mut pending: Vec<(usize, RunId, gcrun_store::PreparedWrite)> = Vec::new();
        for doc in docs {
            match RunRequest::parse(doc, &self.config.limits) {
                Err(v) => results.push(Err(v)),
                Ok(request) => {
                    let id = RunId::new();
                    pending.push((results.len(), id, self.store.prepare_create(id, &request, now, deadline, true)));
                    results.push(Ok(Enqueued { run_id: id, existing: false }));
                }
            }
        }
        let mut conn = self.store.connection();
        for chunk in pending.chunks(500) {
            let pairs: Vec<_> =
                chunk.iter().map(|(_, id, w)| (w.clone(), Job::Submit { run: *id, after: Duration::ZERO })).collect();
            let outcomes = atomic::write_then_push_all(&mut conn, &self.queues, &pairs).await?;
            for ((slot, _, _), outcome) in chunk.iter().zip(outcomes) {
                if let WriteOutcome::Existing(existing) = outcome {
                    self.push_if_never_pushed(existing).await?;
                    results[*slot] = Ok(Enqueued { run_id: existing, existing: true });
                }
            }
        }
        Ok(results)
    }
}
