//! The poll step: one look at a submitted run, then the next poll, or the
//! run's end.

use std::time::Duration;

use gcrun_genesys::{ApiError, RemotePhase, RemoteRun};
use gcrun_model::{Jitter, RunError, RunStatus};
use gcrun_store::{Counter, RunRecord, RunUpdate};

use super::{Act, Decision, Note, PermitOp, Write, api_failure, finish, next_poll, poll_job, resume_webhook};
use crate::config::WorkerConfig;

/// What the poll step needs to find out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// The remote run's state.
    Status { remote_id: String },
}

/// What the poll step learnt.
#[derive(Debug, Clone)]
pub enum Observation {
    Loaded,
    Answer(Result<RemoteRun, ApiError>),
}

/// Decides poll `attempt` of `rec`.
pub fn decide(
    rec: &RunRecord,
    attempt: u32,
    observation: Observation,
    policy: &WorkerConfig,
    now: u64,
    jitter: &mut Jitter,
) -> Decision<Need> {
    match observation {
        Observation::Loaded => loaded(rec, attempt, policy, now, jitter),
        Observation::Answer(Ok(remote)) => answered(rec, attempt, remote, policy, now, jitter),
        Observation::Answer(Err(e)) => failed(rec, attempt, &e, policy, now, jitter),
    }
}

fn loaded(rec: &RunRecord, attempt: u32, policy: &WorkerConfig, now: u64, jitter: &mut Jitter) -> Decision<Need> {
    if let Some(act) = super::cancelled(rec, policy, now) {
        return act.into();
    }
    if rec.status.is_terminal() {
        return resume_webhook(rec, policy).into();
    }
    if !matches!(rec.status, RunStatus::Submitted | RunStatus::Queued | RunStatus::Running) {
        return Act::nothing().into(); // from before a requeue
    }
    if rec.poll_attempts != attempt {
        // A duplicate, or a copy of this step whose successor may never
        // have been pushed (a crash or a failed push after the counter
        // moved): push the current step again; its job id dedupes it.
        return if rec.poll_attempts == attempt + 1 {
            let after = next_poll(rec, rec.poll_attempts, None, policy, now, jitter);
            Act::push(poll_job(rec, rec.poll_attempts, after)).into()
        } else {
            Act::nothing().into()
        };
    }
    let Some(remote_id) = rec.remote_id.clone() else {
        if rec.flavor.is_synchronous() {
            return super::submit::complete_from_record(rec, policy, now).into();
        }
        let update = RunUpdate::failure("submitted run has no remote id");
        return finish(rec, RunStatus::Dead, "no remote id to poll", update, policy, now).into();
    };
    if now >= rec.deadline_ms {
        let update = RunUpdate::failure(format!("still {} at the run deadline", rec.status));
        return finish(rec, RunStatus::TimedOut, "run deadline passed", update, policy, now).into();
    }
    if attempt >= policy.max_poll_attempts {
        let update = RunUpdate::failure(format!("gave up after {attempt} polls"));
        return finish(rec, RunStatus::Dead, "too many polls", update, policy, now).into();
    }
    Decision::Need(Need::Status { remote_id })
}

/// The run goes on: one of any duplicate polls moves the counter on (with
/// a status change, the transition is the compare-and-set), renews the
/// run's permit and pushes the next poll.
fn goes_on(rec: &RunRecord, attempt: u32, to: Option<(RunStatus, String)>, update: RunUpdate, after: Duration) -> Act {
    let write = match to {
        Some((to, cause)) => Write::Transition {
            from: rec.status,
            to,
            cause,
            update: update.poll_attempts(attempt + 1),
            guard: Some((Counter::Poll, attempt)),
        },
        None => Write::Advance { counter: Counter::Poll, expected: attempt, status: rec.status, update },
    };
    Act { write, ..Act::push(poll_job(rec, attempt + 1, after)) }.permit(PermitOp::Renew)
}

fn answered(
    rec: &RunRecord,
    attempt: u32,
    remote: RemoteRun,
    policy: &WorkerConfig,
    now: u64,
    jitter: &mut Jitter,
) -> Decision<Need> {
    let update = RunUpdate::default().remote_status(remote.remote_status.clone());
    match remote.phase {
        RemotePhase::Queued | RemotePhase::Running => {
            let to = if remote.phase == RemotePhase::Queued { RunStatus::Queued } else { RunStatus::Running };
            let to = (rec.status != to && rec.status.can_become(to))
                .then(|| (to, format!("remote status {}", remote.remote_status)));
            let after = next_poll(rec, attempt + 1, None, policy, now, jitter);
            goes_on(rec, attempt, to, update, after).into()
        }
        RemotePhase::Transient { code, message } => {
            let update =
                RunUpdate { last_error: Some(format!("{code}: {message}")), ..update }.retries(rec.retries + 1);
            let after = next_poll(rec, attempt + 1, None, policy, now, jitter);
            goes_on(rec, attempt, None, update, after).note(Note::Retry { stage: "poll", reason: code }).into()
        }
        RemotePhase::Completed { outputs } => {
            finish(rec, RunStatus::Completed, "completed", update.outputs(outputs), policy, now).into()
        }
        RemotePhase::Failed { code, message } => {
            let update = RunUpdate { last_error: Some(format!("{code}: {message}")), ..update }
                .error(RunError::new(code.clone(), message));
            finish(rec, RunStatus::Failed, format!("failed: {code}"), update, policy, now).into()
        }
    }
}

fn failed(
    rec: &RunRecord,
    attempt: u32,
    e: &ApiError,
    policy: &WorkerConfig,
    now: u64,
    jitter: &mut Jitter,
) -> Decision<Need> {
    let verdict = e.verdict();
    // A poll is a read: an ambiguous answer is as good as no answer.
    if !verdict.is_retryable() {
        let update = api_failure(e.to_string(), e);
        return finish(rec, RunStatus::Dead, format!("poll refused: {e}"), update, policy, now).into();
    }
    let update = RunUpdate::failure(e.to_string()).correlated(e.correlation_id.clone()).retries(rec.retries + 1);
    let after = next_poll(rec, attempt + 1, verdict.retry_after(), policy, now, jitter);
    let mut act = goes_on(rec, attempt, None, update, after).note(Note::Retry { stage: "poll", reason: e.label() });
    act.pause = super::pause_for(verdict);
    act.into()
}
