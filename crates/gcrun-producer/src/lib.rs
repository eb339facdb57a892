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
//!   purge, preview, stats), as library calls the CLI and the dashboard
//!   only parse and print around.
//! - [`stats`]: queue depth, recent outcomes, limiters and retention.

pub mod api;
pub mod atomic;
pub mod ingest;
pub mod operator;
pub mod stats;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gcrun_model::{RequestLimits, RunId, RunRequest, Violations};
use gcrun_queue::{Job, PushError, Queues};
use gcrun_store::{Origin, RunUpdate, Store, StoreError, WriteOutcome};
use serde::Serialize;
use serde_json::Value;

/// Who sent a request: the ingest client (`None`: the library or the CLI)
/// and the correlation id it sent (`X-Correlation-ID` or `traceparent`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Upstream<'a> {
    pub client: Option<&'a str>,
    pub correlation: Option<&'a str>,
}

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
    /// The idempotency key names a run whose request was different: the
    /// caller reused a key for another request. Not retryable.
    #[error(
        "idempotency key already used for run {run_id} with another request (its digest {existing_digest}, this \
         request's {request_digest})"
    )]
    Conflict { run_id: RunId, existing_digest: String, request_digest: String },
}

/// The request's digest: SHA-256 of its canonical document (keys sorted),
/// hex. Two requests with the same digest are the same request.
pub fn digest(request: &RunRequest) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(request.to_value().to_string().as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
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

    /// The tenant whose store and queues this producer writes.
    pub fn tenant(&self) -> &gcrun_model::Tenant {
        self.store.tenant()
    }

    /// The same Redis and settings, writing `tenant`'s runs (cheap: the
    /// connection is shared).
    pub fn for_tenant(&self, tenant: &gcrun_model::Tenant) -> Self {
        if tenant == self.tenant() {
            return self.clone();
        }
        Self { store: self.store.of_tenant(tenant), queues: self.queues.of_tenant(tenant), config: self.config.clone() }
    }

    pub fn queues(&self) -> &Queues {
        &self.queues
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.config
    }

    /// Checks a JSON request document and enqueues it.
    pub async fn enqueue_value(&self, doc: &Value) -> Result<Enqueued, ProducerError> {
        self.enqueue_value_for(None, doc).await
    }

    /// [`enqueue_value`](Self::enqueue_value) for an ingest client.
    pub async fn enqueue_value_for(&self, client: Option<&str>, doc: &Value) -> Result<Enqueued, ProducerError> {
        self.enqueue_value_from(Upstream { client, correlation: None }, doc).await
    }

    /// [`enqueue_value`](Self::enqueue_value) from `upstream`.
    pub async fn enqueue_value_from(&self, upstream: Upstream<'_>, doc: &Value) -> Result<Enqueued, ProducerError> {
        let request = RunRequest::parse(doc, &self.config.limits).map_err(ProducerError::Invalid)?;
        self.enqueue_from(upstream, &request).await
    }

    fn origin(upstream: Upstream<'_>, request: &RunRequest) -> Origin {
        Origin {
            client: upstream.client.map(str::to_owned),
            digest: Some(digest(request)),
            correlation: upstream.correlation.map(str::to_owned),
        }
    }

    /// A resend under an idempotency key: the same request, or a conflict.
    async fn existing(&self, existing: RunId, request_digest: &str) -> Result<Enqueued, ProducerError> {
        if let Some(rec) = self.store.get_run(&existing).await? {
            if let Some(stored) = rec.digest.filter(|d| d != request_digest) {
                return Err(ProducerError::Conflict {
                    run_id: existing,
                    existing_digest: stored,
                    request_digest: request_digest.to_string(),
                });
            }
        }
        self.push_if_never_pushed(existing).await?;
        Ok(Enqueued { run_id: existing, existing: true })
    }

    /// Records the run and pushes its submit job, in one script (see
    /// [`atomic`]). With an idempotency key already in use, returns the
    /// existing run; if that run's job was never pushed (a record written
    /// by a release before the two were one script), pushes it now.
    /// The same idempotency key with a different request is
    /// [`ProducerError::Conflict`].
    pub async fn enqueue(&self, request: &RunRequest) -> Result<Enqueued, ProducerError> {
        self.enqueue_for(None, request).await
    }

    /// [`enqueue`](Self::enqueue) for an ingest client: its idempotency
    /// keys are its own, and the run records who sent it.
    pub async fn enqueue_for(&self, client: Option<&str>, request: &RunRequest) -> Result<Enqueued, ProducerError> {
        self.enqueue_from(Upstream { client, correlation: None }, request).await
    }

    /// [`enqueue`](Self::enqueue) from `upstream`: its client and its
    /// correlation id, kept with the run.
    pub async fn enqueue_from(&self, upstream: Upstream<'_>, request: &RunRequest) -> Result<Enqueued, ProducerError> {
        let now = now_ms();
        let deadline = now + self.config.run_deadline.as_millis() as u64;
        let id = RunId::new();
        let origin = Self::origin(upstream, request);
        let write = self.store.prepare_create_from(id, request, now, deadline, true, &origin);
        let job = Job::Submit { run: id, after: Duration::ZERO };
        match atomic::write_then_push(&mut self.store.connection(), &self.queues, &write, &job).await? {
            WriteOutcome::Existing(existing) => self.existing(existing, origin.digest.as_deref().unwrap_or("")).await,
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
        self.enqueue_batch_for(None, docs).await
    }

    /// [`enqueue_batch`](Self::enqueue_batch) for an ingest client. An
    /// item whose idempotency key names another request is refused as a
    /// violation of `/idempotencyKey` (code `conflict`, both digests).
    pub async fn enqueue_batch_for(
        &self,
        client: Option<&str>,
        docs: &[Value],
    ) -> Result<Vec<Result<Enqueued, Violations>>, ProducerError> {
        self.enqueue_batch_from(Upstream { client, correlation: None }, docs).await
    }

    /// [`enqueue_batch`](Self::enqueue_batch) from `upstream` (every run
    /// of the batch keeps its correlation id).
    pub async fn enqueue_batch_from(
        &self,
        upstream: Upstream<'_>,
        docs: &[Value],
    ) -> Result<Vec<Result<Enqueued, Violations>>, ProducerError> {
        let now = now_ms();
        let deadline = now + self.config.run_deadline.as_millis() as u64;
        let mut results: Vec<Result<Enqueued, Violations>> = Vec::with_capacity(docs.len());
        let mut pending: Vec<(usize, RunId, gcrun_store::PreparedWrite)> = Vec::new();
        let mut digests: Vec<String> = Vec::new();
        for doc in docs {
            match RunRequest::parse(doc, &self.config.limits) {
                Err(v) => {
                    results.push(Err(v));
                    digests.push(String::new());
                }
                Ok(request) => {
                    let id = RunId::new();
                    let origin = Self::origin(upstream, &request);
                    digests.push(origin.digest.clone().unwrap_or_default());
                    let write = self.store.prepare_create_from(id, &request, now, deadline, true, &origin);
                    pending.push((results.len(), id, write));
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
                    results[*slot] = match self.existing(existing, &digests[*slot]).await {
                        Ok(e) => Ok(e),
                        Err(ProducerError::Conflict { run_id, existing_digest, request_digest }) => {
                            Err(Violations(vec![gcrun_model::Violation::new(
                                "/idempotencyKey",
                                "conflict",
                                format!(
                                    "already used for run {run_id} with another request (its digest \
                                     {existing_digest}, this one's {request_digest})"
                                ),
                            )]))
                        }
                        Err(e) => return Err(e),
                    };
                }
            }
        }
        Ok(results)
    }
}
