//! The three job handlers as plain async functions over a [`Ctx`]. Each
//! returns a [`Step`]: which follow-up jobs to push and when, or that the
//! job itself is unusable. They never sleep to back off: a wait is a job
//! scheduled for later. The apalis glue in [`crate::jobs`] pushes the
//! follow-ups; tests can drive a single step without a queue.
//!
//! Duplicates are expected (apalis delivers at least once), so every write
//! is a compare-and-set: status transitions on the current status, polls
//! and webhook attempts on their counters. Of several copies of one step,
//! one goes on and the others find nothing to do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gcrun_genesys::{ApiError, GenesysClient, RemotePhase, RemoteRun, SubmitRequest};
use gcrun_model::{
    ErrorClass, Flavor, InputSchema, Jitter, RetrySchedule, RunId, RunRequest, RunStatus, Target, Violation,
    Violations, WebhookStatus,
};
use gcrun_store::{Claim, Counter, Limiter, RunRecord, RunUpdate, Store, StoreError, TransitionOutcome};
use serde_json::{Value, json};

use crate::config::WorkerConfig;
use crate::metrics::Metrics;
use crate::webhook::{self, WebhookSecret};

/// A job to push after the current one.
///
/// Poll and webhook jobs get a deterministic job id (run, generation,
/// attempt), and apalis-redis ignores a push whose id it already holds: a
/// step can be pushed again after a crash or a failed push without ever
/// making a second copy. `generation` tells a requeued run's chain from the
/// previous one (the deadline for polls, the end time for webhooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowUp {
    Submit { run: RunId, after: Duration },
    Poll { run: RunId, generation: u64, attempt: u32, after: Duration },
    Webhook { run: RunId, generation: u64, attempt: u32, after: Duration },
}

impl FollowUp {
    fn poll(rec: &RunRecord, attempt: u32, after: Duration) -> Self {
        FollowUp::Poll { run: rec.id, generation: rec.deadline_ms, attempt, after }
    }

    fn webhook(rec: &RunRecord, attempt: u32, after: Duration) -> Self {
        FollowUp::Webhook { run: rec.id, generation: webhook_generation(rec), attempt, after }
    }
}

/// The generation of a run's webhook chain: when the run ended, plus the
/// number of operator requeues of its webhook.
pub fn webhook_generation(rec: &RunRecord) -> u64 {
    rec.completed_ms.unwrap_or(rec.updated_ms).wrapping_add(u64::from(rec.webhook.epoch))
}

/// What a handler decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The job is done; push these.
    Done(Vec<FollowUp>),
    /// The job itself is unusable (its run record is gone): end it in the
    /// queue's dead set with this reason.
    Abort(String),
}

impl Step {
    fn none() -> Self {
        Step::Done(Vec::new())
    }
    fn then(f: FollowUp) -> Self {
        Step::Done(vec![f])
    }
}

/// An infrastructure failure (Redis): the job is retried by the queue.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A compiled input schema (or none) and when it was read.
type CachedSchema = (Instant, Option<Arc<InputSchema>>);

/// Everything the handlers share.
pub struct Ctx {
    pub store: Store,
    pub limiter: Limiter,
    pub genesys: GenesysClient,
    pub config: WorkerConfig,
    pub metrics: Metrics,
    pub http: reqwest::Client,
    pub webhook_secret: Option<WebhookSecret>,
    jitter: Mutex<Jitter>,
    definitions: Mutex<HashMap<String, CachedSchema>>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("config", &self.config).finish_non_exhaustive()
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Ctx {
    pub fn new(
        store: Store,
        limiter: Limiter,
        genesys: GenesysClient,
        config: WorkerConfig,
        metrics: Metrics,
        webhook_secret: Option<WebhookSecret>,
        seed: Option<u64>,
    ) -> Self {
        // Redirects are not followed: a 30x would turn the POST into a GET
        // without body or signature (and could leave the host allow-list).
        let http = reqwest::Client::builder()
            .user_agent(concat!("gcrun-webhooks/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.webhook_timeout)
            .build()
            .unwrap_or_default();
        Self {
            store,
            limiter,
            genesys,
            config,
            metrics,
            http,
            webhook_secret,
            jitter: Mutex::new(seed.map_or_else(Jitter::from_entropy, Jitter::seeded)),
            definitions: Mutex::new(HashMap::new()),
        }
    }

    fn delay(&self, schedule: &RetrySchedule, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let mut jitter = self.jitter.lock().unwrap_or_else(|p| p.into_inner());
        schedule.delay_after(attempt, retry_after, &mut jitter)
    }

    /// A little spread for jobs told to wait the same time.
    fn spread(&self, d: Duration) -> Duration {
        let mut jitter = self.jitter.lock().unwrap_or_else(|p| p.into_inner());
        let extra =
            RetrySchedule { base: Duration::from_millis(250), cap: Duration::from_millis(250), floor: Duration::ZERO };
        d + extra.delay(0, &mut jitter)
    }

    fn record_api(&self, endpoint: &str, result: &Result<RemoteRun, ApiError>) {
        let status = match result {
            Ok(_) => "2xx".to_string(),
            Err(e) => e.status.map_or_else(|| format!("{:?}", e.kind).to_lowercase(), |s| s.to_string()),
        };
        self.metrics.api(endpoint, &status);
    }

    /// The action's compiled input schema: from this process's cache, then
    /// the cache shared in Redis, then Genesys. `Ok(None)`: no input schema.
    async fn input_schema(
        &self,
        action_id: &str,
        now: u64,
    ) -> Result<Result<Option<Arc<InputSchema>>, DefinitionError>, StoreError> {
        if let Some((at, schema)) = self.definitions.lock().unwrap_or_else(|p| p.into_inner()).get(action_id) {
            if at.elapsed() < self.config.definition_ttl {
                return Ok(Ok(schema.clone()));
            }
        }
        let schema_json = match self.store.cached_definition(action_id, now).await? {
            Some(json) => serde_json::from_str::<Value>(&json).unwrap_or(Value::Null),
            None => {
                let fetched = self.genesys.get_action(action_id).await;
                self.metrics.api(
                    "GET /api/v2/integrations/actions/{actionId}",
                    &fetched
                        .as_ref()
                        .map_or_else(|e| e.status.map_or("transport".into(), |s| s.to_string()), |_| "2xx".into()),
                );
                match fetched {
                    Ok(action) => {
                        let schema = action.input_schema().cloned().unwrap_or(Value::Null);
                        let ttl = self.config.definition_ttl.as_millis() as u64;
                        self.store.cache_definition(action_id, &schema.to_string(), ttl, now).await?;
                        schema
                    }
                    Err(e) => return Ok(Err(DefinitionError::Api(e))),
                }
            }
        };
        let compiled = if schema_json.is_null() {
            None
        } else {
            match InputSchema::compile(&schema_json) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => return Ok(Err(DefinitionError::Schema(e.to_string()))),
            }
        };
        self.definitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(action_id.to_string(), (Instant::now(), compiled.clone()));
        Ok(Ok(compiled))
    }
}

enum DefinitionError {
    Api(ApiError),
    Schema(String),
}

/// The error stored with a run that failed on an API error.
fn api_error_json(e: &ApiError) -> Value {
    json!({
        "code": e.code().map(str::to_owned).or_else(|| e.status.map(|s| format!("http_{s}"))).unwrap_or_else(|| "transport".into()),
        "message": e.to_string(),
        "status": e.status,
        "correlationId": e.correlation_id,
    })
}

fn retry_reason(e: &ApiError) -> String {
    match e.status {
        Some(s) => s.to_string(),
        None => format!("{:?}", e.kind).to_lowercase(),
    }
}

/// Writes a terminal transition and returns the webhook to send, if any.
async fn finish(
    ctx: &Ctx,
    rec: &RunRecord,
    from: RunStatus,
    to: RunStatus,
    cause: &str,
    mut update: RunUpdate,
    now: u64,
) -> Result<Vec<FollowUp>, HandlerError> {
    let wants_webhook = webhook_url(ctx, rec).is_some();
    update.completed_ms = Some(update.completed_ms.unwrap_or(now));
    if wants_webhook {
        update.webhook_status = Some(WebhookStatus::Pending);
        update.webhook_attempts = Some(0);
    }
    let outcome = ctx.store.transition(&rec.id, from, to, now, cause, &update).await?;
    if outcome != TransitionOutcome::Applied {
        return Ok(Vec::new());
    }
    let _ = ctx.limiter.release(&rec.id.to_string()).await;
    let duration = Some(now.saturating_sub(rec.created_ms) as f64 / 1000.0);
    ctx.metrics.run_ended(rec.flavor.as_str(), to.as_str(), duration);
    tracing::info!(run = %rec.id, status = %to, cause, "run ended");
    let ended = RunRecord { completed_ms: update.completed_ms, ..rec.clone() };
    Ok(if wants_webhook { vec![FollowUp::webhook(&ended, 0, Duration::ZERO)] } else { Vec::new() })
}

/// A terminal run whose webhook is still pending: make sure its next
/// delivery job exists (the process may have stopped between the
/// transition and the push). Deterministic job ids make this a no-op when
/// the job is already there.
fn resume_webhook(rec: &RunRecord) -> Step {
    if rec.webhook.status == Some(WebhookStatus::Pending) {
        Step::then(FollowUp::webhook(rec, rec.webhook.attempts, Duration::ZERO))
    } else {
        Step::none()
    }
}

fn webhook_url(ctx: &Ctx, rec: &RunRecord) -> Option<url::Url> {
    rec.request
        .get("webhookUrl")
        .and_then(Value::as_str)
        .and_then(|u| url::Url::parse(u).ok())
        .or_else(|| ctx.config.default_webhook_url.clone())
}

fn violations_json(v: &Violations) -> Value {
    json!({"code": "invalid_request", "message": v.to_string(), "violations": v})
}

// ------------------------------------------------------------------ submit

/// Takes a run from `accepted` to submitted (or to its end).
pub async fn submit(ctx: &Ctx, id: RunId) -> Result<Step, HandlerError> {
    let now = now_ms();
    let Some(rec) = ctx.store.get_run(&id).await? else {
        return Ok(Step::Abort(format!("run {id} has no record (expired or never created)")));
    };
    match rec.status {
        s if s.is_terminal() => Ok(resume_webhook(&rec)),
        // A synchronous run whose answer was stored with `submitted` but
        // whose end was not (the process stopped in between).
        RunStatus::Submitted if rec.remote_id.is_none() && rec.flavor.is_synchronous() => {
            Ok(Step::Done(complete_from_record(ctx, &rec, now).await?))
        }
        // Already submitted: the remote run exists, so never submit again;
        // make sure its poll chain runs (the job id dedupes the push).
        RunStatus::Submitted | RunStatus::Queued | RunStatus::Running => {
            Ok(Step::then(FollowUp::poll(&rec, rec.poll_attempts, Duration::ZERO)))
        }
        RunStatus::Accepted => validate(ctx, rec, now).await,
        RunStatus::Validated => send(ctx, rec, now).await,
        _ => Ok(Step::none()),
    }
}

async fn validate(ctx: &Ctx, rec: RunRecord, now: u64) -> Result<Step, HandlerError> {
    let request = match RunRequest::parse(&rec.request, &ctx.config.limits) {
        Ok(r) => r,
        Err(v) => return reject(ctx, &rec, &v, now).await,
    };
    if let Target::Action { id: action_id } = request.target() {
        match ctx.input_schema(action_id, now).await? {
            Ok(Some(schema)) => {
                let v = schema.validate(request.inputs());
                if !v.is_empty() {
                    return reject(ctx, &rec, &v, now).await;
                }
            }
            Ok(None) => {}
            Err(DefinitionError::Api(e)) if e.status == Some(404) => {
                let v = Violations(vec![Violation::new(
                    "/actionId",
                    "not_found",
                    format!(
                        "action {action_id} does not exist (correlation id {})",
                        e.correlation_id.as_deref().unwrap_or("-")
                    ),
                )]);
                return reject(ctx, &rec, &v, now).await;
            }
            Err(DefinitionError::Api(e)) if e.is_retryable() => {
                return retry_submit(ctx, &rec, RunStatus::Accepted, &e, now).await;
            }
            Err(DefinitionError::Api(e)) => {
                let update = RunUpdate {
                    last_error: Some(format!("reading the action definition: {e}")),
                    correlation_id: e.correlation_id.clone(),
                    error: Some(api_error_json(&e)),
                    ..RunUpdate::default()
                };
                let cause = format!("definition unreadable: {e}");
                return Ok(Step::Done(
                    finish(ctx, &rec, RunStatus::Accepted, RunStatus::Dead, &cause, update, now).await?,
                ));
            }
            Err(DefinitionError::Schema(e)) => {
                let update = RunUpdate { last_error: Some(e.clone()), ..RunUpdate::default() };
                return Ok(Step::Done(finish(ctx, &rec, RunStatus::Accepted, RunStatus::Dead, &e, update, now).await?));
            }
        }
    }
    match ctx
        .store
        .transition(
            &rec.id,
            RunStatus::Accepted,
            RunStatus::Validated,
            now,
            "inputs match the contract",
            &RunUpdate::default(),
        )
        .await?
    {
        TransitionOutcome::Applied => {
            let rec = RunRecord { status: RunStatus::Validated, ..rec };
            send(ctx, rec, now).await
        }
        TransitionOutcome::Stale(_) => Ok(Step::none()),
    }
}

async fn reject(ctx: &Ctx, rec: &RunRecord, v: &Violations, now: u64) -> Result<Step, HandlerError> {
    let update = RunUpdate { last_error: Some(v.to_string()), error: Some(violations_json(v)), ..RunUpdate::default() };
    Ok(Step::Done(finish(ctx, rec, RunStatus::Accepted, RunStatus::Rejected, &v.to_string(), update, now).await?))
}

/// A 429 tells every worker of this client to wait, not just this one: the
/// shared limiter pauses until the server's `Retry-After` (1 s without one).
async fn pause_all_on_429(ctx: &Ctx, e: &ApiError, now: u64) -> Result<(), HandlerError> {
    if e.status == Some(429) {
        let wait = e.retry_after.unwrap_or(Duration::from_secs(1));
        ctx.limiter.pause_until(now.saturating_add(wait.as_millis() as u64), now).await?;
    }
    Ok(())
}

/// A transient failure before the remote run exists: try the submit again
/// later, or give up after `max_submit_attempts`.
async fn retry_submit(
    ctx: &Ctx,
    rec: &RunRecord,
    status: RunStatus,
    e: &ApiError,
    now: u64,
) -> Result<Step, HandlerError> {
    pause_all_on_429(ctx, e, now).await?;
    let retries = rec.retries + 1;
    ctx.metrics.retry("submit", &retry_reason(e));
    if retries >= ctx.config.max_submit_attempts {
        let update = RunUpdate {
            retries: Some(retries),
            last_error: Some(e.to_string()),
            correlation_id: e.correlation_id.clone(),
            error: Some(api_error_json(e)),
            ..RunUpdate::default()
        };
        let cause = format!("gave up after {retries} transient submit failures; last: {e}");
        return Ok(Step::Done(finish(ctx, rec, status, RunStatus::Dead, &cause, update, now).await?));
    }
    let update = RunUpdate {
        retries: Some(retries),
        last_error: Some(e.to_string()),
        correlation_id: e.correlation_id.clone(),
        submit_claim_until: Some(0),
        ..RunUpdate::default()
    };
    ctx.store.update(&rec.id, &update).await?;
    let retry_after = match e.class {
        ErrorClass::Retryable { after } => after,
        ErrorClass::Fatal => None,
    };
    Ok(Step::then(FollowUp::Submit {
        run: rec.id,
        after: ctx.delay(&ctx.config.submit_schedule, retries - 1, retry_after),
    }))
}

async fn send(ctx: &Ctx, rec: RunRecord, now: u64) -> Result<Step, HandlerError> {
    if now >= rec.deadline_ms {
        let update = RunUpdate {
            last_error: Some("run deadline passed before it could be submitted".into()),
            ..RunUpdate::default()
        };
        return Ok(Step::Done(
            finish(ctx, &rec, RunStatus::Validated, RunStatus::TimedOut, "deadline passed before submit", update, now)
                .await?,
        ));
    }
    // Requeued after it had been submitted: the remote run exists, so go
    // back to polling it instead of starting a second one.
    if let Some(remote_id) = rec.remote_id.clone() {
        let cause = format!("resumed: already submitted as {remote_id}");
        return match ctx
            .store
            .transition(&rec.id, RunStatus::Validated, RunStatus::Submitted, now, &cause, &RunUpdate::default())
            .await?
        {
            TransitionOutcome::Applied => Ok(Step::then(FollowUp::poll(&rec, rec.poll_attempts, Duration::ZERO))),
            TransitionOutcome::Stale(_) => Ok(Step::none()),
        };
    }
    // Only one copy of a submit job may call Genesys at a time. The claim
    // outlives the slowest call; a copy that finds it held comes back then.
    let hold = ctx.config.submit_claim.as_millis() as u64;
    match ctx.store.claim_submit(&rec.id, now, hold).await? {
        Claim::Claimed => {}
        Claim::HeldUntil(until) => {
            return Ok(Step::then(FollowUp::Submit {
                run: rec.id,
                after: ctx.spread(Duration::from_millis(until.saturating_sub(now))),
            }));
        }
        Claim::NotValidated => return Ok(Step::then(FollowUp::Submit { run: rec.id, after: Duration::ZERO })),
    }
    let lease = rec.id.to_string();
    if let Err((wait, why)) = ctx.limiter.acquire(&lease, now).await? {
        ctx.metrics.limiter_wait(&format!("{why:?}").to_lowercase());
        ctx.store.update(&rec.id, &RunUpdate { submit_claim_until: Some(0), ..RunUpdate::default() }).await?;
        return Ok(Step::then(FollowUp::Submit { run: rec.id, after: ctx.spread(wait) }));
    }
    let request = match RunRequest::parse(&rec.request, &ctx.config.limits) {
        Ok(r) => r,
        Err(v) => {
            let update =
                RunUpdate { last_error: Some(v.to_string()), error: Some(violations_json(&v)), ..RunUpdate::default() };
            return Ok(Step::Done(
                finish(ctx, &rec, RunStatus::Validated, RunStatus::Dead, "request no longer parses", update, now)
                    .await?,
            ));
        }
    };
    let api = ctx.genesys.run_api(rec.flavor);
    let run_name = rec.id.to_string();
    let result =
        api.submit(SubmitRequest { target: request.target(), inputs: request.inputs(), run_name: &run_name }).await;
    ctx.record_api(submit_endpoint(rec.flavor), &result);
    let now = now_ms();
    match result {
        Ok(remote) => {
            // A synchronous answer is stored with `submitted`, so a crash
            // before the end is recorded cannot lose it.
            let (outputs, error) = match &remote.phase {
                RemotePhase::Completed { outputs } => (Some(outputs.clone()), None),
                RemotePhase::Failed { code, message } => (None, Some(json!({"code": code, "message": message}))),
                _ => (None, None),
            };
            let update = RunUpdate {
                remote_id: remote.remote_id.clone(),
                remote_status: Some(remote.remote_status.clone()),
                submitted_ms: Some(now),
                outputs,
                error,
                ..RunUpdate::default()
            };
            let cause = match &remote.remote_id {
                Some(rid) => format!("submitted as {rid}"),
                None => "executed".to_string(),
            };
            match ctx
                .store
                .transition(&rec.id, RunStatus::Validated, RunStatus::Submitted, now, &cause, &update)
                .await?
            {
                TransitionOutcome::Applied => {}
                TransitionOutcome::Stale(_) => return Ok(Step::none()),
            }
            let rec = RunRecord { status: RunStatus::Submitted, remote_id: remote.remote_id.clone(), ..rec };
            match apply_phase(ctx, &rec, remote, now).await? {
                Some(follow) => Ok(Step::Done(follow)),
                None => Ok(Step::then(FollowUp::poll(&rec, 0, next_poll(ctx, &rec, 0, None, now)))),
            }
        }
        // The request may have run even though no answer came back. Only
        // `runs` carries a name the remote side can deduplicate on; for the
        // others a blind retry could run the action twice, so the run goes
        // to the dead-letter set for an operator to check and requeue.
        Err(e) if e.is_retryable() && e.ambiguous && rec.flavor != Flavor::Runs => {
            let update = RunUpdate {
                last_error: Some(format!("outcome unknown, not retried to avoid running it twice: {e}")),
                correlation_id: e.correlation_id.clone(),
                error: Some(api_error_json(&e)),
                ..RunUpdate::default()
            };
            Ok(Step::Done(
                finish(ctx, &rec, RunStatus::Validated, RunStatus::Dead, "submit outcome unknown", update, now).await?,
            ))
        }
        Err(e) if e.is_retryable() => {
            let _ = ctx.limiter.release(&lease).await;
            retry_submit(ctx, &rec, RunStatus::Validated, &e, now).await
        }
        Err(e) => {
            // Refused credentials or permissions are gcrun's setup, not the
            // run's fault: dead-letter (requeueable once fixed), not failed.
            let setup = e.kind == gcrun_genesys::ApiErrorKind::Auth || matches!(e.status, Some(401 | 403));
            let to = if setup { RunStatus::Dead } else { RunStatus::Failed };
            let update = RunUpdate {
                last_error: Some(e.to_string()),
                correlation_id: e.correlation_id.clone(),
                error: Some(api_error_json(&e)),
                ..RunUpdate::default()
            };
            Ok(Step::Done(
                finish(ctx, &rec, RunStatus::Validated, to, &format!("submit refused: {e}"), update, now).await?,
            ))
        }
    }
}

/// Ends a synchronous run from the answer stored with its `submitted`
/// transition.
async fn complete_from_record(ctx: &Ctx, rec: &RunRecord, now: u64) -> Result<Vec<FollowUp>, HandlerError> {
    match (&rec.outputs, &rec.error) {
        (Some(_), _) => {
            finish(ctx, rec, RunStatus::Submitted, RunStatus::Completed, "completed", RunUpdate::default(), now).await
        }
        (None, Some(error)) => {
            let code = error["code"].as_str().unwrap_or("failed").to_string();
            finish(
                ctx,
                rec,
                RunStatus::Submitted,
                RunStatus::Failed,
                &format!("failed: {code}"),
                RunUpdate::default(),
                now,
            )
            .await
        }
        (None, None) => {
            let update = RunUpdate {
                last_error: Some("submitted, but its answer was not recorded".into()),
                ..RunUpdate::default()
            };
            finish(ctx, rec, RunStatus::Submitted, RunStatus::Dead, "answer lost", update, now).await
        }
    }
}

fn submit_endpoint(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Runs => "POST /api/v2/actions/runs",
        Flavor::Execute => "POST /api/v2/integrations/actions/{actionId}/execute",
        Flavor::Workflow => "POST /api/v2/flows/executions",
    }
}

fn status_endpoint(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Runs => "GET /api/v2/actions/runs/{runId}",
        Flavor::Execute => "status (execute)",
        Flavor::Workflow => "GET /api/v2/flows/executions/{flowExecutionId}",
    }
}

/// When to poll next: the schedule, never much past the deadline.
fn next_poll(ctx: &Ctx, rec: &RunRecord, attempt: u32, retry_after: Option<Duration>, now: u64) -> Duration {
    let d = ctx.delay(&ctx.config.poll_schedule, attempt, retry_after);
    let to_deadline = Duration::from_millis(rec.deadline_ms.saturating_sub(now)) + Duration::from_millis(100);
    // Never below a second: apalis schedules in whole seconds, and a burst of
    // sub-second polls just before the deadline would only cost API calls.
    d.min(to_deadline).max(Duration::from_secs(1))
}

/// Records what the remote side says. `Some(follow-ups)` when the run
/// ended; `None` when it goes on (the caller schedules the next poll).
async fn apply_phase(
    ctx: &Ctx,
    rec: &RunRecord,
    remote: RemoteRun,
    now: u64,
) -> Result<Option<Vec<FollowUp>>, HandlerError> {
    let status = rec.status;
    let remote_status = Some(remote.remote_status.clone());
    match remote.phase {
        RemotePhase::Queued | RemotePhase::Running => {
            let to = if remote.phase == RemotePhase::Queued { RunStatus::Queued } else { RunStatus::Running };
            if status != to && status.can_become(to) {
                let update = RunUpdate { remote_status, ..RunUpdate::default() };
                ctx.store
                    .transition(&rec.id, status, to, now, &format!("remote status {}", remote.remote_status), &update)
                    .await?;
            }
            Ok(None)
        }
        RemotePhase::Transient { code, message } => {
            ctx.metrics.retry("poll", &code);
            let update = RunUpdate {
                retries: Some(rec.retries + 1),
                last_error: Some(format!("{code}: {message}")),
                remote_status,
                ..RunUpdate::default()
            };
            ctx.store.update(&rec.id, &update).await?;
            Ok(None)
        }
        RemotePhase::Completed { outputs } => {
            let update = RunUpdate { outputs: Some(outputs), remote_status, ..RunUpdate::default() };
            Ok(Some(finish(ctx, rec, status, RunStatus::Completed, "completed", update, now).await?))
        }
        RemotePhase::Failed { code, message } => {
            let update = RunUpdate {
                error: Some(json!({"code": code, "message": message})),
                last_error: Some(format!("{code}: {message}")),
                remote_status,
                ..RunUpdate::default()
            };
            Ok(Some(finish(ctx, rec, status, RunStatus::Failed, &format!("failed: {code}"), update, now).await?))
        }
    }
}

// ------------------------------------------------------------------ poll

/// Polls a submitted run once.
pub async fn poll(ctx: &Ctx, id: RunId, attempt: u32) -> Result<Step, HandlerError> {
    let now = now_ms();
    let Some(rec) = ctx.store.get_run(&id).await? else {
        return Ok(Step::Abort(format!("run {id} has no record (expired or never created)")));
    };
    if rec.status.is_terminal() {
        return Ok(resume_webhook(&rec));
    }
    if !matches!(rec.status, RunStatus::Submitted | RunStatus::Queued | RunStatus::Running) {
        return Ok(Step::none()); // from before a requeue
    }
    if rec.poll_attempts != attempt {
        // A duplicate, or a copy of this step whose successor may never
        // have been pushed (a crash or a failed push after the counter
        // moved): push the current step again; its job id dedupes it.
        return Ok(if rec.poll_attempts == attempt + 1 {
            Step::then(FollowUp::poll(&rec, rec.poll_attempts, next_poll(ctx, &rec, rec.poll_attempts, None, now)))
        } else {
            Step::none()
        });
    }
    let Some(remote_id) = rec.remote_id.clone() else {
        if rec.flavor.is_synchronous() {
            return Ok(Step::Done(complete_from_record(ctx, &rec, now).await?));
        }
        let update = RunUpdate { last_error: Some("submitted run has no remote id".into()), ..RunUpdate::default() };
        return Ok(Step::Done(
            finish(ctx, &rec, rec.status, RunStatus::Dead, "no remote id to poll", update, now).await?,
        ));
    };
    if now >= rec.deadline_ms {
        let update =
            RunUpdate { last_error: Some(format!("still {} at the run deadline", rec.status)), ..RunUpdate::default() };
        return Ok(Step::Done(
            finish(ctx, &rec, rec.status, RunStatus::TimedOut, "run deadline passed", update, now).await?,
        ));
    }
    if attempt >= ctx.config.max_poll_attempts {
        let update = RunUpdate { last_error: Some(format!("gave up after {attempt} polls")), ..RunUpdate::default() };
        return Ok(Step::Done(finish(ctx, &rec, rec.status, RunStatus::Dead, "too many polls", update, now).await?));
    }
    let api = ctx.genesys.run_api(rec.flavor);
    let result = api.status(&remote_id).await;
    ctx.record_api(status_endpoint(rec.flavor), &result);
    let now = now_ms();
    let retry_after = match result {
        Ok(remote) => {
            if let Some(follow) = apply_phase(ctx, &rec, remote, now).await? {
                return Ok(Step::Done(follow));
            }
            None
        }
        Err(e) if e.is_retryable() => {
            ctx.metrics.retry("poll", &retry_reason(&e));
            pause_all_on_429(ctx, &e, now).await?;
            let update = RunUpdate {
                retries: Some(rec.retries + 1),
                last_error: Some(e.to_string()),
                correlation_id: e.correlation_id.clone(),
                ..RunUpdate::default()
            };
            ctx.store.update(&rec.id, &update).await?;
            e.retry_after
        }
        Err(e) => {
            let update = RunUpdate {
                last_error: Some(e.to_string()),
                correlation_id: e.correlation_id.clone(),
                error: Some(api_error_json(&e)),
                ..RunUpdate::default()
            };
            return Ok(Step::Done(
                finish(ctx, &rec, rec.status, RunStatus::Dead, &format!("poll refused: {e}"), update, now).await?,
            ));
        }
    };
    // Still going: one of any duplicate polls moves the counter on.
    if !ctx.store.advance(&rec.id, Counter::Poll, attempt, &RunUpdate::default()).await? {
        return Ok(Step::none());
    }
    let _ = ctx.limiter.renew(&rec.id.to_string(), now).await;
    Ok(Step::then(FollowUp::poll(&rec, attempt + 1, next_poll(ctx, &rec, attempt + 1, retry_after, now))))
}

// ------------------------------------------------------------------ webhook

/// Delivers a run's completion webhook once.
pub async fn deliver_webhook(ctx: &Ctx, id: RunId, attempt: u32) -> Result<Step, HandlerError> {
    let now = now_ms();
    let Some(rec) = ctx.store.get_run_with_history(&id).await? else {
        return Ok(Step::Abort(format!("run {id} has no record (expired or never created)")));
    };
    // Only ended runs have something to report (a job from before a
    // requeue finds its run going again).
    if !rec.status.is_terminal() || rec.webhook.status != Some(WebhookStatus::Pending) {
        return Ok(Step::none());
    }
    if rec.webhook.attempts != attempt {
        // As for polls: re-push the current step in case this copy's
        // successor was never pushed; its job id dedupes it.
        return Ok(if rec.webhook.attempts == attempt + 1 {
            Step::then(FollowUp::webhook(&rec, rec.webhook.attempts, Duration::ZERO))
        } else {
            Step::none()
        });
    }
    let Some(url) = webhook_url(ctx, &rec) else { return Ok(Step::none()) };
    // Messages name the URL without its query, which may carry a token.
    let shown = format!("{}{}", url.origin().ascii_serialization(), url.path());
    if let Some(allowed) = &ctx.config.webhook_allowed_hosts {
        if !url.host_str().is_some_and(|h| allowed.iter().any(|a| a.eq_ignore_ascii_case(h))) {
            ctx.metrics.webhook("dead");
            ctx.store.webhook_dead(&id, &format!("host of {shown} is not in the webhook allow-list"), now).await?;
            return Ok(Step::none());
        }
    }
    let body = webhook::body(&rec, now);
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let event_id = webhook::event_id(&rec);
    let timestamp = now / 1000;
    let mut request = ctx
        .http
        .post(url.clone())
        .header("content-type", "application/json")
        .header("webhook-id", &event_id)
        .header("webhook-timestamp", timestamp.to_string());
    if let Some(secret) = &ctx.webhook_secret {
        request = request.header("webhook-signature", secret.sign(&event_id, timestamp, &bytes));
    }
    let result = request.body(bytes).send().await;
    let (retryable, reason, retry_after) = match result {
        Ok(resp) if resp.status().is_success() => {
            let update = RunUpdate {
                webhook_status: Some(WebhookStatus::Delivered),
                webhook_delivered_ms: Some(now_ms()),
                ..RunUpdate::default()
            };
            if ctx.store.advance(&id, Counter::Webhook, attempt, &update).await? {
                ctx.metrics.webhook("delivered");
            }
            return Ok(Step::none());
        }
        Ok(resp) if resp.status().is_redirection() => (
            false,
            format!("receiver at {shown} answered a redirect ({}); configure the final URL", resp.status().as_u16()),
            None,
        ),
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| gcrun_genesys::error::parse_retry_after(v, SystemTime::now()));
            let retryable = !(400..500).contains(&status) || status == 408 || status == 429;
            (retryable, format!("receiver at {shown} answered HTTP {status}"), retry_after)
        }
        Err(e) => (true, format!("could not deliver to {shown}: {}", e.without_url()), None),
    };
    let attempts = attempt + 1;
    if !retryable || attempts >= ctx.config.max_webhook_attempts {
        let update = RunUpdate { webhook_last_error: Some(reason.clone()), ..RunUpdate::default() };
        if ctx.store.advance(&id, Counter::Webhook, attempt, &update).await? {
            ctx.metrics.webhook("dead");
            let why = if retryable { format!("{reason} (after {attempts} attempts)") } else { reason };
            ctx.store.webhook_dead(&id, &why, now).await?;
        }
        return Ok(Step::none());
    }
    let update = RunUpdate { webhook_last_error: Some(reason), ..RunUpdate::default() };
    if !ctx.store.advance(&id, Counter::Webhook, attempt, &update).await? {
        return Ok(Step::none());
    }
    ctx.metrics.webhook("retried");
    ctx.metrics.retry("webhook", "delivery");
    let after = ctx.delay(&ctx.config.webhook_schedule, attempt, retry_after);
    Ok(Step::then(FollowUp::webhook(&rec, attempts, after)))
}
