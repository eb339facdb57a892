//! The three steps as pure decisions.
//!
//! Each step is `decide(&record, observation, &policy, now, &mut jitter)
//! -> Decision`: no Redis, no HTTP, no clock (the time is passed in, and so
//! is the jitter's random source, seedable in tests). A [`Decision`] is
//! data: either an [`Act`] (the compare-and-set write, what to do with the
//! run's permit, the jobs that follow, the notes for metrics and logs), or
//! a need for something only I/O can tell (a contract, a claim, a permit,
//! Genesys's answer, a webhook receiver's answer), which the interpreter
//! ([`crate::interpret`]) finds out and hands back as the next observation.
//!
//! Keeping decisions as data, with no closures, is what lets one
//! interpreter perform them all, lets `run-now` drive the same steps with
//! no Redis, and lets the queue engine later perform a whole decision in
//! one script.
//!
//! Duplicates are expected (delivery is at least once), so every write is
//! compare-and-set: status transitions on the current status, polls and
//! webhook attempts on their counters. Of several copies of one step, one
//! goes on; the jobs of a write that did not apply are never pushed.

pub mod poll;
pub mod submit;
pub mod webhook;

use std::time::Duration;

use gcrun_genesys::ApiError;
use gcrun_model::{Jitter, RetrySchedule, RunStatus, WebhookStatus};
use gcrun_queue::Job;
use gcrun_store::{Counter, RunRecord, RunUpdate, WebhookAttempt};
use url::Url;

use crate::config::WorkerConfig;

/// What a step decided: act, find something out first, or give up on the
/// job itself.
#[derive(Debug, Clone, PartialEq)]
// One decision lives for one step; boxing its act would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Decision<N> {
    Act(Act),
    /// Observe this, then decide again.
    Need(N),
    /// The job is unusable (its run record is gone or unreadable): end it
    /// in the queue's dead set with this reason.
    Abort(String),
}

/// Everything a decision does, in order: pause the client (always), then
/// the write; only if the write applied, the permit, the notes and the
/// follow-up jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Act {
    pub write: Write,
    /// Every worker of this client waits this long from now, by Redis's
    /// clock (a 429's Retry-After).
    pub pause: Option<Duration>,
    pub permit: PermitOp,
    pub jobs: Vec<Job>,
    pub notes: Vec<Note>,
    /// Whether the step goes on in this job with the record as written.
    pub then: Then,
    /// Park the run: an operator's hold stops it until a resume pushes its
    /// job again.
    pub park: bool,
}

/// The one write of a decision. Every variant but `Nothing` and `Update`
/// is compare-and-set: when another copy of the step got there first, it
/// does not apply, and nothing else of the decision happens.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    Nothing,
    /// Move the run from `from` to `to` (with history, audit and counts),
    /// writing `update` with it; with a `guard`, only while that counter
    /// still holds that value too.
    Transition {
        from: RunStatus,
        to: RunStatus,
        cause: String,
        update: RunUpdate,
        guard: Option<(Counter, u32)>,
    },
    /// Move a step counter from `expected` to `expected + 1`, with `update`,
    /// while the run is still `status` (the one decided on).
    Advance {
        counter: Counter,
        expected: u32,
        status: RunStatus,
        update: RunUpdate,
    },
    /// Give back the submit claim `token` names (no call was made), only
    /// while it is still that copy's.
    ReleaseClaim {
        token: String,
    },
    /// Record webhook delivery attempt `expected`.
    Webhook {
        expected: u32,
        attempt: WebhookAttempt,
    },
}

/// What happens to the run's concurrency permit once the write applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermitOp {
    Keep,
    /// The run holds its slot a while longer (it is still going).
    Renew,
    /// The slot is free again (the run ended, or the submit did not happen).
    Release,
    /// No slot now: the run waits for one (a release wakes it; its
    /// scheduled submit job is only the safety net).
    Wait,
}

/// What the interpreter tells metrics and logs once the write applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    RunEnded { status: RunStatus, cause: String },
    Retry { stage: &'static str, reason: String },
    Webhook(&'static str),
    LimiterWait(String),
}

/// Whether the step goes on in the same job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Then {
    Stop,
    /// Decide again on the record as just written (accepted → validated →
    /// submit, or a synchronous answer stored → its end).
    Continue,
}

impl Act {
    pub(crate) fn new(write: Write) -> Self {
        Self {
            write,
            pause: None,
            permit: PermitOp::Keep,
            jobs: Vec::new(),
            notes: Vec::new(),
            then: Then::Stop,
            park: false,
        }
    }

    /// Nothing to do: a duplicate, or a job from before a requeue.
    pub fn nothing() -> Self {
        Self::new(Write::Nothing)
    }

    /// Push `job`, write nothing.
    pub fn push(job: Job) -> Self {
        Self::new(Write::Nothing).then_push(job)
    }

    pub(crate) fn then_push(mut self, job: Job) -> Self {
        self.jobs.push(job);
        self
    }

    pub(crate) fn note(mut self, note: Note) -> Self {
        self.notes.push(note);
        self
    }

    pub(crate) fn parked(mut self) -> Self {
        self.park = true;
        self
    }

    pub(crate) fn and_continue(mut self) -> Self {
        self.then = Then::Continue;
        self
    }

    pub(crate) fn permit(mut self, op: PermitOp) -> Self {
        self.permit = op;
        self
    }

    /// The status the write moves the run to, if it moves it.
    pub fn moves_to(&self) -> Option<RunStatus> {
        match &self.write {
            Write::Transition { to, .. } => Some(*to),
            _ => None,
        }
    }
}

impl<N> From<Act> for Decision<N> {
    fn from(act: Act) -> Self {
        Decision::Act(act)
    }
}

/// The record as a write that applied leaves it (what the store's script
/// did, in memory), so a step that goes on decides on what is there now.
pub fn mirror(rec: &mut RunRecord, write: &Write, now: u64) {
    match write {
        Write::Nothing => {}
        Write::Transition { to, update, .. } => rec.apply(Some(*to), update, now),
        Write::ReleaseClaim { .. } => rec.apply(None, &RunUpdate::default().release_claim(), now),
        Write::Advance { counter, expected, update, .. } => {
            rec.apply(None, update, now);
            match counter {
                Counter::Poll => rec.poll_attempts = expected + 1,
                Counter::Retries => rec.retries = expected + 1,
            }
        }
        Write::Webhook { expected, attempt } => {
            rec.webhook.attempts = expected + 1;
            match attempt {
                WebhookAttempt::Delivered { at_ms } => {
                    rec.webhook.status = Some(WebhookStatus::Delivered);
                    rec.webhook.delivered_ms = Some(*at_ms);
                }
                WebhookAttempt::Failed { reason } => rec.webhook.last_error = Some(reason.clone()),
                WebhookAttempt::Dead { reason } => {
                    rec.webhook.status = Some(WebhookStatus::Dead);
                    rec.webhook.last_error = Some(reason.clone());
                }
            }
        }
    }
}

/// Where a run's webhook goes: its own URL, else the configured default.
pub fn webhook_url(rec: &RunRecord, policy: &WorkerConfig) -> Option<Url> {
    rec.request.webhook_url().cloned().or_else(|| policy.default_webhook_url.clone())
}

/// A run ends: the terminal transition (which marks the webhook owed when
/// there is one to send), the permit released, the first delivery job.
pub(crate) fn finish(
    rec: &RunRecord,
    to: RunStatus,
    cause: impl Into<String>,
    update: RunUpdate,
    policy: &WorkerConfig,
    now: u64,
) -> Act {
    let mut cause = cause.into();
    let mut update = update;
    if rec.withholds_secure_data() {
        // A secure action's data (and any text that may quote it) does not
        // outlive the run, and its end is told without it.
        cause = format!("{to}: details withheld (secure action)");
        update = update.withhold_secure_data(rec, cause.clone());
    }
    let wants_webhook = webhook_url(rec, policy).is_some();
    let completed = update.completed_ms.unwrap_or(now);
    let update = update.completed_at(completed);
    let update = if wants_webhook { update.webhook_owed() } else { update };
    let mut act = Act::new(Write::Transition { from: rec.status, to, cause: cause.clone(), update, guard: None })
        .permit(PermitOp::Release)
        .note(Note::RunEnded { status: to, cause });
    if wants_webhook {
        let ended = RunRecord { completed_ms: Some(completed), ..rec.clone() };
        act = act.then_push(webhook_job(&ended, 0, Duration::ZERO));
    }
    act
}

/// A run someone asked to cancel, not ended yet: end it `cancelled`, as
/// any end (its permit released, its webhook owed), whatever step found
/// it first. No more submits or polls follow.
pub(crate) fn cancelled(rec: &RunRecord, policy: &WorkerConfig, now: u64) -> Option<Act> {
    let cause = rec.cancel_requested.as_ref().filter(|_| !rec.status.is_terminal())?;
    let update = RunUpdate::failure(cause.clone());
    Some(finish(rec, RunStatus::Cancelled, cause.clone(), update, policy, now))
}

/// How long after the first attempt should have been made inline a
/// resumed webhook job for it waits, beyond the delivery timeout.
const INLINE_GRACE: Duration = Duration::from_secs(5);

/// A terminal run whose webhook is still pending: make sure its next
/// delivery job exists. Deterministic job ids make this a no-op when the
/// job is already there. The first attempt has no job while the job that
/// ended the run makes it inline ([`WorkerConfig::webhook_inline`]): this
/// copy (a stale or redelivered step job) may be looking at a run whose
/// attempt is in flight right now, or whose job died with its process. So
/// that job waits out the longest an inline attempt can take: by then the
/// attempt is recorded (and the job finds nothing to do), or it never will
/// be (and the job makes it). Never two deliveries at once.
pub(crate) fn resume_webhook(rec: &RunRecord, policy: &WorkerConfig) -> Act {
    if rec.webhook.status != Some(WebhookStatus::Pending) {
        return Act::nothing();
    }
    let attempt = rec.webhook.attempts;
    let after =
        if policy.webhook_inline && attempt == 0 { policy.webhook_timeout + INLINE_GRACE } else { Duration::ZERO };
    Act::push(webhook_job(rec, attempt, after))
}

pub(crate) fn poll_job(rec: &RunRecord, attempt: u32, after: Duration) -> Job {
    Job::Poll { run: rec.id, generation: rec.poll_generation(), attempt, after }
}

pub(crate) fn webhook_job(rec: &RunRecord, attempt: u32, after: Duration) -> Job {
    Job::Webhook { run: rec.id, generation: rec.webhook_generation(), attempt, after }
}

/// The update stored with a run that failed on an API error.
pub(crate) fn api_failure(reason: impl Into<String>, e: &ApiError) -> RunUpdate {
    RunUpdate::failure(reason).correlated(e.correlation_id.clone()).error(e.run_error())
}

/// A little spread for jobs told to wait the same time, so they do not
/// all come back at once.
pub(crate) fn spread(d: Duration, jitter: &mut Jitter) -> Duration {
    let extra =
        RetrySchedule { base: Duration::from_millis(250), cap: Duration::from_millis(250), floor: Duration::ZERO };
    d + extra.delay(0, jitter)
}

/// When to poll next: the schedule (the server's Retry-After wins when
/// larger), never much past the deadline. The first poll of a run whose
/// action's runs have been seen to take a while ([`RunRecord::expected_ms`],
/// see [`crate::durations`]) is aimed there (spread by up to 5 % and at
/// most 250 ms, at most the schedule's cap): a run holds its concurrency
/// slot until a poll sees its end.
pub(crate) fn next_poll(
    rec: &RunRecord,
    attempt: u32,
    retry_after: Option<Duration>,
    policy: &WorkerConfig,
    now: u64,
    jitter: &mut Jitter,
) -> Duration {
    let mut d = policy.poll_schedule.delay_after(attempt, retry_after, jitter);
    if let (0, None, Some(expected)) = (attempt, retry_after, rec.expected_ms) {
        let since = rec.submitted_ms.map_or(0, |s| now.saturating_sub(s));
        let late = Duration::from_millis((expected / 20).min(250));
        let spread = RetrySchedule { base: late, cap: late, floor: Duration::ZERO }.delay(0, jitter);
        let aim = Duration::from_millis(expected.saturating_sub(since)) + spread;
        d = aim.min(policy.poll_schedule.cap);
    }
    let to_deadline = Duration::from_millis(rec.deadline_ms.saturating_sub(now)) + Duration::from_millis(100);
    // Never below a second: Genesys allows each token 300 requests a
    // minute, and polls of many runs at once spend it first. Except right
    // after an aimed first poll found the run still going: it is about to
    // end, so the second poll comes a tenth of the aim later (at least
    // 250 ms). Aimed first polls find most runs ended, so runs cost fewer
    // polls than the schedule's, not more.
    let floor = match (attempt, retry_after, rec.expected_ms) {
        (1, None, Some(expected)) => Duration::from_millis((expected / 10).clamp(250, 1_000)),
        _ => Duration::from_secs(1),
    };
    if floor < Duration::from_secs(1) {
        d = d.min(floor);
    }
    d.min(to_deadline).max(floor)
}

/// A 429 tells every worker of this client to wait, not just this one:
/// the shared limiter pauses for the server's Retry-After (1 s without),
/// from now by Redis's clock.
pub(crate) fn pause_for(verdict: gcrun_genesys::Verdict) -> Option<Duration> {
    match verdict {
        gcrun_genesys::Verdict::RateLimited(after) => Some(after.unwrap_or(Duration::from_secs(1))),
        _ => None,
    }
}
