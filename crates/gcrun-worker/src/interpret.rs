//! The one interpreter: drives a step's decisions to the end of its job,
//! finding out what a decision needs (contract, claim, permit, Genesys,
//! the webhook receiver) and performing what it decided.
//!
//! The drivers are written once, over a [`Port`]: where observations come
//! from and where acts go. [`Deps`] is the port of a worker process (Redis,
//! the shared limiter, the queues); `run-now` uses a port that keeps the
//! record in memory ([`crate::local`]). Performing an act is always the
//! same order: the client-wide pause, then the compare-and-set write; only
//! if it applied, the permit, the notes, and the follow-up jobs. A job's
//! last act goes to Redis as one script ([`crate::finish`]): the write,
//! the follow-up jobs and the job's ack together.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gcrun_genesys::{GenesysClient, SubmitRequest};
use gcrun_model::{Jitter, RunId, RunStatus};
use gcrun_queue::{Job, JobHandle, PushError, Queues};
use gcrun_store::{Claim, Denied, Limiter, PreparedWrite, RunRecord, Store, StoreError, WriteOutcome};

use crate::config::WorkerConfig;
use crate::definitions::Definitions;
use crate::metrics::{self, Metrics};
use crate::step::{self, Act, Decision, Note, PermitOp, Then, Write, poll, submit, webhook};
use crate::webhook::{Delivery, Outgoing};

/// The wall clock in unix milliseconds: read by the interpreter before each
/// decision, never by a decision.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done; these follow-up jobs were pushed.
    Done(Vec<Job>),
    /// The job is unusable: end it in the queue's dead set with this reason.
    Abort(String),
}

/// An infrastructure failure (Redis): the job is tried again by the queue.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Push(#[from] PushError),
}

/// Where a step's observations come from and where its acts go.
pub trait Port: Send + Sync {
    fn policy(&self) -> &WorkerConfig;
    fn genesys(&self) -> &GenesysClient;
    fn metrics(&self) -> &Metrics;
    /// Runs `f` with the jitter's random source (decisions are pure; the
    /// source is state).
    fn with_jitter<T>(&self, f: impl FnOnce(&mut Jitter) -> T) -> T;
    fn load(&self, id: &RunId, with_history: bool)
    -> impl Future<Output = Result<Option<RunRecord>, StepError>> + Send;
    fn contract(&self, action_id: &str, now: u64) -> impl Future<Output = Result<submit::Contract, StepError>> + Send;
    /// Claims the submit for `hold` from now. Claims, marks and permits are
    /// timed by Redis's clock, never this process's.
    fn claim(&self, rec: &RunRecord, hold: Duration) -> impl Future<Output = Result<Claim, StepError>> + Send;
    /// Extends the claim `token` names over a call in flight to `hold` from
    /// now.
    fn renew_claim(
        &self,
        rec: &RunRecord,
        token: &str,
        hold: Duration,
    ) -> impl Future<Output = Result<bool, StepError>> + Send;
    /// Marks the call as about to be made, if the claim `token` names is
    /// still held, extending it to `hold` from now.
    fn mark_sent(
        &self,
        rec: &RunRecord,
        token: &str,
        hold: Duration,
    ) -> impl Future<Output = Result<bool, StepError>> + Send;
    #[allow(clippy::type_complexity)]
    fn permit(&self, rec: &RunRecord)
    -> impl Future<Output = Result<Result<(), (Duration, Denied)>, StepError>> + Send;
    fn deliver(&self, out: &Outgoing, now: u64) -> impl Future<Output = Delivery> + Send;
    /// Dead-letters a run whose record cannot be read, with the reason.
    fn quarantine(&self, id: &RunId, reason: &str, now: u64)
    -> impl Future<Output = Result<Outcome, StepError>> + Send;
    /// Performs `act` on `rec`; `Ok(false)` when its write did not apply.
    /// `job`: this is the job's last act, and the job is this one; a port
    /// that can settles it together with the write.
    fn apply(
        &self,
        rec: &RunRecord,
        act: &Act,
        now: u64,
        job: Option<&JobHandle>,
    ) -> impl Future<Output = Result<bool, StepError>> + Send;
}

/// A step that keeps asking for more than this is a bug, not a reason to
/// loop forever.
const MAX_ROUNDS: usize = 16;

fn missing(id: &RunId) -> Outcome {
    Outcome::Abort(format!("run {id} has no record (expired or never created)"))
}

/// The run's record; `Err(outcome)` ends the job: no record, or one that
/// cannot be read (the run is then dead-lettered with the reason).
async fn load<P: Port>(port: &P, id: &RunId, with_history: bool) -> Result<Result<RunRecord, Outcome>, StepError> {
    match port.load(id, with_history).await {
        Ok(Some(rec)) => Ok(Ok(rec)),
        Ok(None) => Ok(Err(missing(id))),
        Err(StepError::Store(StoreError::Corrupt { detail, .. })) => {
            Ok(Err(port.quarantine(id, &detail, now_ms()).await?))
        }
        Err(e) => Err(e),
    }
}

/// What performing an act leaves the step to do.
enum Settled {
    /// The job is over.
    Ended(Outcome),
    /// Decide again on the record as written.
    Continue,
    /// The run's end is stored and its webhook owed: the job goes on with
    /// the webhook's first attempt ([`WorkerConfig::webhook_inline`]); these
    /// jobs were pushed so far.
    Webhook(Vec<Job>),
}

/// The first-attempt webhook job among an act's jobs: the one an end
/// pushes.
fn first_webhook(job: &Job) -> bool {
    matches!(job, Job::Webhook { attempt: 0, .. })
}

/// Performs an act the step decided and tells what follows. With `inline`
/// (the step may deliver the webhook itself), an end that owes a webhook is
/// written without its webhook job and without the job's ack: the webhook
/// step then goes on in this job, and its last write acks it. A crash in
/// between redelivers this job, which finds the run ended and pushes the
/// webhook job after all ([`step::resume_webhook`]).
async fn settle<P: Port>(
    port: &P,
    rec: &mut RunRecord,
    act: Act,
    now: u64,
    pushed: &mut Vec<Job>,
    job: Option<&JobHandle>,
    inline: bool,
) -> Result<Settled, StepError> {
    // Only an act that ends the run: a stale copy that finds the run ended
    // pushes the webhook job too (`step::resume_webhook`), and must not
    // make a second attempt beside the one in flight.
    let ends = act.moves_to().is_some_and(|to| to.is_terminal());
    if inline && ends && job.is_some() && act.then == Then::Stop && act.jobs.iter().any(first_webhook) {
        let jobs: Vec<Job> = act.jobs.iter().copied().filter(|j| !first_webhook(j)).collect();
        let act = Act { jobs, ..act };
        if !port.apply(rec, &act, now, None).await? {
            return Ok(Settled::Ended(Outcome::Done(std::mem::take(pushed))));
        }
        pushed.extend(act.jobs.iter().copied());
        return Ok(Settled::Webhook(std::mem::take(pushed)));
    }
    let last = (act.then == Then::Stop).then_some(job).flatten();
    if !port.apply(rec, &act, now, last).await? {
        return Ok(Settled::Ended(Outcome::Done(std::mem::take(pushed))));
    }
    pushed.extend(act.jobs.iter().copied());
    if act.then == Then::Stop {
        return Ok(Settled::Ended(Outcome::Done(std::mem::take(pushed))));
    }
    step::mirror(rec, &act.write, now);
    Ok(Settled::Continue)
}

/// Runs `call` while renewing the submit claim `token` names every third of
/// the claim period, so a live worker's call keeps its claim however long
/// it takes. A failed renewal is logged, never fatal: should the claim
/// lapse, a later copy finds the call marked and dead-letters the run as an
/// unknown outcome rather than calling again.
async fn with_claim_renewed<P: Port, T>(port: &P, rec: &RunRecord, token: &str, call: impl Future<Output = T>) -> T {
    let hold = port.policy().submit_call;
    let every = (hold / 3).max(Duration::from_millis(10));
    let mut call = std::pin::pin!(call);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            out = &mut call => return out,
            _ = tick.tick() => {
                match port.renew_claim(rec, token, hold).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(run = %rec.id, "submit claim lost during the call"),
                    Err(e) => tracing::warn!(run = %rec.id, error = %e, "renewing the submit claim failed"),
                }
            }
        }
    }
}

/// One step, as the driver sees it: how to decide, and how to find out
/// what a decision needs. Each step's logic stays in `step::*`; this only
/// maps its needs onto the port.
trait StepKind: Sync {
    type Need: Send;
    type Observation: Send;
    const NAME: &'static str;
    /// The webhook body carries the transitions.
    const WITH_HISTORY: bool = false;
    /// A run's end this step writes may be followed, in the same job, by
    /// the webhook's first attempt.
    const ENDS_RUNS: bool = true;
    fn loaded() -> Self::Observation;
    fn decide(
        &self,
        rec: &RunRecord,
        observation: Self::Observation,
        policy: &WorkerConfig,
        now: u64,
        jitter: &mut Jitter,
    ) -> Decision<Self::Need>;
    fn observe<P: Port>(
        &self,
        port: &P,
        rec: &RunRecord,
        need: Self::Need,
        now: u64,
    ) -> impl Future<Output = Result<Self::Observation, StepError>> + Send;
}

struct SubmitStep;
struct PollStep(u32);
struct WebhookStep(u32);

impl StepKind for SubmitStep {
    type Need = submit::Need;
    type Observation = submit::Observation;
    const NAME: &'static str = "submit";

    fn loaded() -> submit::Observation {
        submit::Observation::Loaded
    }

    fn decide(
        &self,
        rec: &RunRecord,
        observation: submit::Observation,
        policy: &WorkerConfig,
        now: u64,
        jitter: &mut Jitter,
    ) -> Decision<submit::Need> {
        submit::decide(rec, observation, policy, now, jitter)
    }

    async fn observe<P: Port>(
        &self,
        port: &P,
        rec: &RunRecord,
        need: submit::Need,
        now: u64,
    ) -> Result<submit::Observation, StepError> {
        Ok(match need {
            submit::Need::Contract { action_id } => {
                submit::Observation::Contract(port.contract(&action_id, now).await?)
            }
            submit::Need::Claim { hold } => submit::Observation::Claim(port.claim(rec, hold).await?),
            submit::Need::Permit { token } => submit::Observation::Permit { token, outcome: port.permit(rec).await? },
            submit::Need::MarkSent { token, hold } => {
                let marked = port.mark_sent(rec, &token, hold).await?;
                submit::Observation::Marked(marked.then_some(token))
            }
            submit::Need::Submit { request, token } => {
                let api = port.genesys().run_api(rec.flavor);
                let run_name = rec.id.to_string();
                let call = SubmitRequest { target: request.target(), inputs: request.inputs(), run_name: &run_name };
                let result = with_claim_renewed(port, rec, &token, api.submit(call)).await;
                port.metrics().api(metrics::submit_endpoint(rec.flavor), &metrics::result_label(&result));
                submit::Observation::Answer(result)
            }
        })
    }
}

impl StepKind for PollStep {
    type Need = poll::Need;
    type Observation = poll::Observation;
    const NAME: &'static str = "poll";

    fn loaded() -> poll::Observation {
        poll::Observation::Loaded
    }

    fn decide(
        &self,
        rec: &RunRecord,
        observation: poll::Observation,
        policy: &WorkerConfig,
        now: u64,
        jitter: &mut Jitter,
    ) -> Decision<poll::Need> {
        poll::decide(rec, self.0, observation, policy, now, jitter)
    }

    async fn observe<P: Port>(
        &self,
        port: &P,
        rec: &RunRecord,
        need: poll::Need,
        _now: u64,
    ) -> Result<poll::Observation, StepError> {
        let poll::Need::Status { remote_id } = need;
        let result = port.genesys().run_api(rec.flavor).status(&remote_id).await;
        port.metrics().api(metrics::status_endpoint(rec.flavor), &metrics::result_label(&result));
        Ok(poll::Observation::Answer(result))
    }
}

impl StepKind for WebhookStep {
    type Need = webhook::Need;
    type Observation = webhook::Observation;
    const NAME: &'static str = "webhook";
    const WITH_HISTORY: bool = true;
    const ENDS_RUNS: bool = false;

    fn loaded() -> webhook::Observation {
        webhook::Observation::Loaded
    }

    fn decide(
        &self,
        rec: &RunRecord,
        observation: webhook::Observation,
        policy: &WorkerConfig,
        now: u64,
        jitter: &mut Jitter,
    ) -> Decision<webhook::Need> {
        webhook::decide(rec, self.0, observation, policy, now, jitter)
    }

    async fn observe<P: Port>(
        &self,
        port: &P,
        _rec: &RunRecord,
        need: webhook::Need,
        now: u64,
    ) -> Result<webhook::Observation, StepError> {
        let webhook::Need::Deliver(out) = need;
        Ok(webhook::Observation::Delivered(port.deliver(&out, now).await))
    }
}

/// How a step's loop ended.
enum Driven {
    Ended(Outcome),
    /// The run ended and its webhook's first attempt is this job's to make.
    Webhook(Vec<Job>),
}

/// The one loop every step runs: load the record, decide, then either act
/// (and go on if the act says so) or find out what the decision needs and
/// decide again.
async fn drive_step<P: Port, S: StepKind>(
    port: &P,
    id: RunId,
    step: S,
    job: Option<&JobHandle>,
) -> Result<Driven, StepError> {
    let mut rec = match load(port, &id, S::WITH_HISTORY).await? {
        Ok(rec) => rec,
        Err(outcome) => return Ok(Driven::Ended(outcome)),
    };
    let inline = S::ENDS_RUNS && port.policy().webhook_inline;
    let mut observation = S::loaded();
    let mut pushed = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let now = now_ms();
        let decision = port.with_jitter(|j| step.decide(&rec, observation, port.policy(), now, j));
        observation = match decision {
            Decision::Abort(reason) => return Ok(Driven::Ended(Outcome::Abort(reason))),
            Decision::Act(act) => match settle(port, &mut rec, act, now, &mut pushed, job, inline).await? {
                Settled::Ended(outcome) => return Ok(Driven::Ended(outcome)),
                Settled::Webhook(pushed) => return Ok(Driven::Webhook(pushed)),
                Settled::Continue => S::loaded(),
            },
            Decision::Need(need) => step.observe(port, &rec, need, now).await?,
        };
    }
    let reason = format!("run {id}: the {} step did not settle in {MAX_ROUNDS} rounds (a bug)", S::NAME);
    Ok(Driven::Ended(Outcome::Abort(reason)))
}

/// A step's loop, then, when it ended the run with its webhook owed, the
/// webhook step's first attempt in the same job (which its last write
/// acks).
async fn drive<P: Port, S: StepKind>(
    port: &P,
    id: RunId,
    step: S,
    job: Option<&JobHandle>,
) -> Result<Outcome, StepError> {
    match drive_step(port, id, step, job).await? {
        Driven::Ended(outcome) => Ok(outcome),
        Driven::Webhook(mut pushed) => match drive_step(port, id, WebhookStep(0), job).await? {
            Driven::Ended(Outcome::Abort(reason)) => Ok(Outcome::Abort(reason)),
            // (The webhook step never ends a run: `Webhook` cannot come back.)
            Driven::Ended(Outcome::Done(more)) | Driven::Webhook(more) => {
                pushed.extend(more);
                Ok(Outcome::Done(pushed))
            }
        },
    }
}

/// Drives a submit job for `id` to its end (`job`: the queue's job, when
/// the port may settle it with the last write).
pub async fn drive_submit<P: Port>(port: &P, id: RunId, job: Option<&JobHandle>) -> Result<Outcome, StepError> {
    drive(port, id, SubmitStep, job).await
}

/// Drives poll `attempt` of `id`.
pub async fn drive_poll<P: Port>(
    port: &P,
    id: RunId,
    attempt: u32,
    job: Option<&JobHandle>,
) -> Result<Outcome, StepError> {
    drive(port, id, PollStep(attempt), job).await
}

/// Drives delivery `attempt` of `id`'s webhook.
pub async fn drive_webhook<P: Port>(
    port: &P,
    id: RunId,
    attempt: u32,
    job: Option<&JobHandle>,
) -> Result<Outcome, StepError> {
    drive(port, id, WebhookStep(attempt), job).await
}

/// Operators' holds (scope, note) and when they were read.
type HoldsRead = (std::time::Instant, Vec<(String, String)>);

/// Everything a worker process's steps use: the port onto Redis, the
/// shared limiter, the queues, Genesys and webhook receivers.
pub struct Deps {
    store: Store,
    limiter: Limiter,
    genesys: GenesysClient,
    queues: Queues,
    metrics: Metrics,
    policy: WorkerConfig,
    http: crate::webhook::WebhookClient,
    webhook_secret: Option<crate::webhook::WebhookKeys>,
    definitions: Definitions,
    /// What runs of each action take, as this process saw them end.
    durations: crate::durations::Durations,
    jitter: Mutex<Jitter>,
    /// Operators' holds as last read, and when: read at most once a second
    /// (a run decided on with a stale view is checked again when parked).
    holds: Mutex<Option<HoldsRead>>,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps").field("policy", &self.policy).finish_non_exhaustive()
    }
}

/// The parts a [`Deps`] is built from.
#[derive(Debug)]
pub struct DepsParts {
    pub store: Store,
    pub limiter: Limiter,
    pub genesys: GenesysClient,
    pub queues: Queues,
    pub metrics: Metrics,
    pub policy: WorkerConfig,
    pub webhook_secret: Option<crate::webhook::WebhookKeys>,
    /// Seed of the retry jitter (`None`: from entropy).
    pub seed: Option<u64>,
}

/// The webhook client could not be built (no TLS backend, say): a worker
/// that cannot send webhooks safely must not start with a client that
/// follows redirects and never times out.
#[derive(Debug, thiserror::Error)]
#[error("building the webhook HTTP client: {0}")]
pub struct BuildError(#[from] reqwest::Error);

impl Deps {
    pub fn new(parts: DepsParts) -> Result<Self, BuildError> {
        let http = crate::webhook::client(parts.policy.webhook_timeout, parts.policy.webhook_egress)?;
        Ok(Self {
            definitions: Definitions::new(parts.policy.definition_ttl),
            durations: crate::durations::Durations::new(),
            jitter: Mutex::new(parts.seed.map_or_else(Jitter::from_entropy, Jitter::seeded)),
            holds: Mutex::new(None),
            store: parts.store,
            limiter: parts.limiter,
            genesys: parts.genesys,
            queues: parts.queues,
            metrics: parts.metrics,
            policy: parts.policy,
            http,
            webhook_secret: parts.webhook_secret,
        })
    }

    /// Operators' holds, read from Redis at most once a second.
    async fn current_holds(&self) -> Result<Vec<(String, String)>, StepError> {
        if let Ok(guard) = self.holds.lock() {
            if let Some((_, holds)) = guard.as_ref().filter(|(at, _)| at.elapsed() < Duration::from_secs(1)) {
                return Ok(holds.clone());
            }
        }
        let holds = self.store.holds().await?;
        if let Ok(mut guard) = self.holds.lock() {
            *guard = Some((std::time::Instant::now(), holds.clone()));
        }
        Ok(holds)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn queues(&self) -> &Queues {
        &self.queues
    }

    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// Drives a submit job (settled with its last write when `job` is given).
    pub async fn submit(&self, id: RunId, job: Option<&JobHandle>) -> Result<Outcome, StepError> {
        drive_submit(self, id, job).await
    }

    /// Drives a poll job.
    pub async fn poll(&self, id: RunId, attempt: u32, job: Option<&JobHandle>) -> Result<Outcome, StepError> {
        drive_poll(self, id, attempt, job).await
    }

    /// Drives a webhook job.
    pub async fn webhook(&self, id: RunId, attempt: u32, job: Option<&JobHandle>) -> Result<Outcome, StepError> {
        drive_webhook(self, id, attempt, job).await
    }

    /// Gives a run's slot back and wakes the run that waited longest for
    /// one, with a submit job due now. Best effort: a wake-up lost to a
    /// Redis error is caught by the waiter's own scheduled job.
    async fn release_permit(&self, lease: &str) {
        if let Ok(Some(woken)) = self.limiter.release(lease).await {
            if let Ok(run) = woken.parse::<RunId>() {
                let _ = self.queues.push_submit(run, Duration::ZERO).await;
            }
        }
    }

    /// The store write an act's [`Write`] is.
    fn prepare(&self, rec: &RunRecord, write: &Write, now: u64) -> Result<PreparedWrite, StoreError> {
        let id = &rec.id;
        Ok(match write {
            Write::Nothing => PreparedWrite::nothing(id),
            Write::Transition { from, to, cause, update, guard } => {
                self.store.prepare_transition(id, *from, *to, *guard, now, cause, update)?
            }
            // A retried failure goes into the history too, unless the run
            // withholds a secure action's data (its error may quote it).
            Write::Advance { counter, expected, status, update } if !rec.withholds_secure_data() => {
                self.store.prepare_advance_logged(id, *counter, *expected, *status, update)
            }
            Write::Advance { counter, expected, status, update } => {
                self.store.prepare_advance(id, *counter, *expected, *status, update)
            }
            Write::ReleaseClaim { token } => self.store.prepare_release_claim(id, token),
            Write::Webhook { expected, attempt } => self.store.prepare_webhook_attempt(id, *expected, attempt, now)?,
        })
    }
}

impl Port for Deps {
    fn policy(&self) -> &WorkerConfig {
        &self.policy
    }

    fn genesys(&self) -> &GenesysClient {
        &self.genesys
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn with_jitter<T>(&self, f: impl FnOnce(&mut Jitter) -> T) -> T {
        f(&mut self.jitter.lock().unwrap_or_else(|p| p.into_inner()))
    }

    async fn load(&self, id: &RunId, with_history: bool) -> Result<Option<RunRecord>, StepError> {
        let rec =
            if with_history { self.store.get_run_with_history(id).await? } else { self.store.get_run(id).await? };
        let Some(mut rec) = rec else { return Ok(None) };
        if !rec.status.is_terminal() && self.policy.learn_poll_timing {
            rec.expected_ms = self.durations.aim(&rec.target);
        }
        if !rec.status.is_terminal() && rec.submitted_ms.is_none() {
            let holds = self.current_holds().await?;
            rec.held = gcrun_store::HoldScope::of(&rec).iter().find_map(|scope| {
                holds.iter().find(|(k, _)| *k == scope.key()).map(|(k, note)| format!("{k}: {note}"))
            });
        }
        Ok(Some(rec))
    }

    async fn contract(&self, action_id: &str, now: u64) -> Result<submit::Contract, StepError> {
        Ok(self.definitions.contract(&self.store, &self.genesys, &self.metrics, action_id, now).await?)
    }

    async fn claim(&self, rec: &RunRecord, hold: Duration) -> Result<Claim, StepError> {
        // A token per claim, so the mark before the call can tell this copy's
        // claim from a later one.
        let token = uuid::Uuid::new_v4().simple().to_string();
        Ok(self.store.claim_submit(&rec.id, hold, &token).await?)
    }

    async fn renew_claim(&self, rec: &RunRecord, token: &str, hold: Duration) -> Result<bool, StepError> {
        Ok(self.store.renew_submit_claim(&rec.id, token, hold).await?)
    }

    async fn mark_sent(&self, rec: &RunRecord, token: &str, hold: Duration) -> Result<bool, StepError> {
        Ok(self.store.mark_submit_sent(&rec.id, token, hold).await?)
    }

    async fn permit(&self, rec: &RunRecord) -> Result<Result<(), (Duration, Denied)>, StepError> {
        let acquired = self.limiter.acquire(&rec.id.to_string()).await?;
        // Slots a dead worker's lapsed leases freed: wake their waiters as a
        // release would (best effort; each waiter's own job is the net).
        for woken in acquired.woken {
            if let Ok(run) = woken.parse::<RunId>() {
                let _ = self.queues.push_submit(run, Duration::ZERO).await;
            }
        }
        Ok(acquired.outcome.map(|_| ()))
    }

    async fn deliver(&self, out: &Outgoing, now: u64) -> Delivery {
        // The keys as they are now (a rotated file is read again); keys
        // that cannot be read are a delivery to retry, never an unsigned one.
        let keys = match self.webhook_secret.as_ref().map(crate::webhook::WebhookKeys::current).transpose() {
            Ok(keys) => keys,
            Err(e) => {
                return Delivery::Retry { reason: format!("the webhook secret could not be read: {e}"), after: None };
            }
        };
        crate::webhook::deliver(&self.http, keys.as_deref(), out, now).await
    }

    async fn quarantine(&self, id: &RunId, reason: &str, now: u64) -> Result<Outcome, StepError> {
        if self.store.quarantine(id, reason, now).await? {
            self.release_permit(&id.to_string()).await;
            tracing::warn!(run = %id, reason, "run dead-lettered: its record cannot be read");
            return Ok(Outcome::Done(Vec::new()));
        }
        Ok(Outcome::Abort(format!("run {id} has a corrupt record: {reason}")))
    }

    async fn apply(&self, rec: &RunRecord, act: &Act, now: u64, job: Option<&JobHandle>) -> Result<bool, StepError> {
        if let Some(pause) = act.pause {
            self.limiter.pause_for(pause).await?;
        }
        // Parked before the job is acked: a crash in between redelivers the
        // job, which parks it again. A hold lifted meanwhile: go on now.
        if act.park && !self.store.park(rec, now).await? {
            self.queues.push_submit(rec.id, Duration::ZERO).await?;
        }
        let id = &rec.id;
        let write = self.prepare(rec, &act.write, now)?;
        let outcome = match job {
            // The job's last act: write, follow-up jobs and ack in one script.
            Some(job) => {
                let mut conn = self.store.connection();
                crate::finish::finish(&mut conn, self.queues.engine(), job, &write, &act.jobs).await?
            }
            None => self.store.apply(&write).await?,
        };
        if outcome != WriteOutcome::Applied {
            return Ok(false);
        }
        let lease = id.to_string();
        // The permit is an optimisation of the shared limit: a failure to
        // release or renew it ends with its lease expiring, not with a
        // lost run, so it never fails the step.
        match act.permit {
            PermitOp::Keep => {}
            PermitOp::Renew => {
                let _ = self.limiter.renew(&lease).await;
            }
            PermitOp::Release => self.release_permit(&lease).await,
            PermitOp::Wait => {
                let _ = self.limiter.wait_for_slot(&lease).await;
            }
        }
        for note in &act.notes {
            tell(&self.metrics, rec, note, now);
        }
        self.learn_from_first_poll(rec, act, now);
        if job.is_none() && !act.jobs.is_empty() {
            // One script per queue for all of an act's jobs, not one each.
            self.queues.push_all(&act.jobs).await?;
        }
        Ok(true)
    }
}

impl Deps {
    /// What a run's first poll found, for the aim of later first polls
    /// (see [`crate::durations`]): the run ended, or its poll counter moved
    /// past 0 with the run going on.
    fn learn_from_first_poll(&self, rec: &RunRecord, act: &Act, now: u64) {
        let (Some(submitted), Some(_)) = (rec.submitted_ms, rec.remote_id.as_ref()) else { return };
        if !self.policy.learn_poll_timing {
            return;
        }
        // A first poll teaches; so does the first end seen of an action,
        // whichever poll saw it, to start from.
        let first = rec.poll_attempts == 0;
        let ended = act.notes.iter().any(|n| {
            matches!(n, Note::RunEnded { status, .. } if matches!(status, RunStatus::Completed | RunStatus::Failed))
        });
        let going_on = matches!(
            &act.write,
            Write::Advance { counter: gcrun_store::Counter::Poll, expected: 0, .. }
                | Write::Transition { guard: Some((gcrun_store::Counter::Poll, 0)), .. }
        );
        let (after_ms, aimed) = (now.saturating_sub(submitted), rec.first_poll_aim_ms.filter(|a| *a > 0));
        let found = if ended && (first || self.durations.aim(&rec.target).is_none()) {
            crate::durations::FirstPoll::Ended { after_ms, aimed: aimed.filter(|_| first) }
        } else if going_on && first {
            crate::durations::FirstPoll::GoingOn { after_ms, aimed }
        } else {
            return;
        };
        self.durations.first_poll(&rec.target, found);
    }
}

/// Metrics and logs for what an applied act did.
pub(crate) fn tell(metrics: &Metrics, rec: &RunRecord, note: &Note, now: u64) {
    match note {
        Note::RunEnded { status, cause } => {
            let duration = Some(now.saturating_sub(rec.created_ms) as f64 / 1000.0);
            metrics.run_ended(rec.flavor.as_str(), status.as_str(), duration);
            let correlation = rec.upstream_correlation.as_deref().unwrap_or_default();
            tracing::info!(run = %rec.id, status = %status, cause, correlation, "run ended");
        }
        Note::Retry { stage, reason } => metrics.retry(stage, reason),
        Note::Webhook(outcome) => metrics.webhook(outcome),
        Note::LimiterWait(reason) => metrics.limiter_wait(reason),
    }
}
