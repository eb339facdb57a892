//! The submit step: from `accepted` to a remote run that exists (or to the
//! run's end). Two decision points around the Genesys call, both pure:
//! before it (contract, deadline, claim, permit) and after it (the answer).

use std::sync::Arc;
use std::time::Duration;

use super::{Act, Decision, Note, PermitOp, Write, api_failure, finish, next_poll, poll_job, resume_webhook, spread};
use crate::config::WorkerConfig;
use gcrun_genesys::{ApiError, RemotePhase, RemoteRun, Verdict};
use gcrun_model::{InputSchema, Jitter, RunError, RunRequest, RunStatus, Target, Violation, Violations};
use gcrun_queue::Job;
use gcrun_store::{Claim, Counter, Denied, RunRecord, RunUpdate};

/// What the submit step needs to find out.
#[derive(Debug, Clone, PartialEq)]
pub enum Need {
    /// The action's input contract.
    Contract { action_id: String },
    /// The right to submit for `hold` (an expiring compare-and-set on the
    /// record, timed by Redis's clock).
    Claim { hold: Duration },
    /// A permit of the shared limiter (the claim `token` is held).
    Permit { token: String },
    /// The mark that the call is about to be made, with the claim extended
    /// over the call.
    MarkSent { token: String, hold: Duration },
    /// Genesys's answer to the submit, made while the claim `token` names
    /// is renewed.
    Submit { request: Box<RunRequest>, token: String },
}

/// What the submit step learnt.
#[derive(Debug, Clone)]
pub enum Observation {
    /// Only the record.
    Loaded,
    Contract(Contract),
    Claim(Claim),
    /// `Err((wait, why))`: no permit now; one is expected after `wait`.
    Permit {
        token: String,
        outcome: Result<(), (Duration, Denied)>,
    },
    /// The call is marked as sent under this claim token; `None`: the claim
    /// was no longer this copy's, and it must not call.
    Marked(Option<String>),
    Answer(Result<RemoteRun, ApiError>),
}

/// An action's input contract, as far as the worker could tell.
#[derive(Debug, Clone)]
pub enum Contract {
    /// The definition: its input schema (`None`: the action declares none,
    /// so inputs go unvalidated and the run's history says so), and whether
    /// the action is secure (its data is then withheld, see
    /// [`RunRecord::withholds_secure_data`]).
    Read { schema: Option<Arc<InputSchema>>, secure: bool },
    /// The definition could not be read.
    Unreadable(ApiError),
    /// The definition's schema does not compile.
    Invalid(String),
}

pub fn decide(
    rec: &RunRecord,
    observation: Observation,
    policy: &WorkerConfig,
    now: u64,
    jitter: &mut Jitter,
) -> Decision<Need> {
    match observation {
        Observation::Loaded => loaded(rec, policy, now),
        Observation::Contract(contract) => contract_checked(rec, contract, policy, now, jitter),
        Observation::Claim(claim) => match claim {
            // The deadline is checked only once the claim is held: a copy
            // must not time out a run whose submit another copy has in
            // flight (its remote result would be thrown away).
            Claim::Claimed { .. } if now >= rec.deadline_ms => {
                let update = RunUpdate::failure("run deadline passed before it could be submitted");
                finish(rec, RunStatus::TimedOut, "deadline passed before submit", update, policy, now).into()
            }
            Claim::Claimed { token } => Decision::Need(Need::Permit { token }),
            // Another copy is calling Genesys; come back when its claim ends.
            Claim::Held { left } => Act::push(submit_job(rec, spread(left, jitter))).into(),
            Claim::NotValidated => Act::push(submit_job(rec, Duration::ZERO)).into(),
            Claim::SentWithoutAnswer { sent_ms } => {
                let detail = format!(
                    "sent at {} and no answer was recorded (the worker stopped or lost Redis during the call)",
                    gcrun_model::timestamp::rfc3339_ms(sent_ms)
                );
                unknown_outcome(rec, &detail, None, policy, now, jitter).into()
            }
        },
        // No slot: wait on the list a release wakes, not on a timer.
        // Either way the claim is given back only if it is still this
        // copy's: a copy that stalled here must not clear a newer one's.
        Observation::Permit { token, outcome: Err((_, Denied::Concurrency)) } => {
            Act::new(Write::ReleaseClaim { token })
                .then_push(submit_job(rec, spread(policy.slot_wait, jitter)))
                .permit(PermitOp::Wait)
                .note(Note::LimiterWait("concurrency".into()))
                .into()
        }
        Observation::Permit { token, outcome: Err((wait, why)) } => {
            // A rate wait is this run's own reserved moment: no jitter. The
            // end of a pause is everyone's: spread them.
            let after = if why == Denied::Rate { wait } else { spread(wait, jitter) };
            Act::new(Write::ReleaseClaim { token })
                .then_push(submit_job(rec, after))
                .note(Note::LimiterWait(format!("{why:?}").to_lowercase()))
                .into()
        }
        Observation::Permit { token, outcome: Ok(()) } => match rec.request.revalidate(&policy.limits) {
            Ok(()) => Decision::Need(Need::MarkSent { token, hold: policy.submit_call }),
            Err(v) => finish(
                rec,
                RunStatus::Dead,
                "request no longer passes this worker's limits",
                RunUpdate::failure(v.to_string()).error(RunError::invalid(&v)),
                policy,
                now,
            )
            .into(),
        },
        Observation::Marked(Some(token)) => {
            Decision::Need(Need::Submit { request: Box::new(rec.request.clone()), token })
        }
        // The claim lapsed while this copy waited for its permit. Its permit
        // is the run's (keyed by run id), possibly now another copy's: keep
        // it, and come back: if another copy holds the claim this job finds
        // it held and waits; if none does, it claims again.
        Observation::Marked(None) => Act::push(submit_job(rec, Duration::ZERO)).into(),
        Observation::Answer(answer) => answered(rec, answer, policy, now, jitter),
    }
}

/// A submit that may have run without an answer reaching gcrun. At most
/// once by default: the run goes to the dead-letter set for an operator to
/// check Genesys, then requeue or purge. A target configured as idempotent
/// (`at_least_once`) is sent again, counted as a retry.
fn unknown_outcome(
    rec: &RunRecord,
    detail: &str,
    error: Option<&ApiError>,
    policy: &WorkerConfig,
    now: u64,
    jitter: &mut Jitter,
) -> Act {
    let target = rec.request.target().id();
    if policy.retries_unknown(target) {
        let retries = rec.retries + 1;
        if retries >= policy.max_submit_attempts {
            let cause = format!("gave up after {retries} submits with unknown outcomes; last: {detail}");
            return finish(
                rec,
                RunStatus::Dead,
                cause.clone(),
                RunUpdate::failure(cause).retries(retries),
                policy,
                now,
            );
        }
        let update = RunUpdate::failure(format!("outcome unknown, sent again (at least once): {detail}"))
            .correlated(error.and_then(|e| e.correlation_id.clone()))
            .call_not_run();
        let after = policy.submit_schedule.delay_after(retries - 1, None, jitter);
        return Act::new(Write::Advance {
            counter: Counter::Retries,
            expected: rec.retries,
            status: rec.status,
            update,
        })
        .then_push(submit_job(rec, after))
        .permit(PermitOp::Release)
        .note(Note::Retry { stage: "submit", reason: "unknown_outcome".into() });
    }
    let reason = format!("sent; answer lost: check Genesys, then requeue or purge ({detail})");
    let update = match error {
        Some(e) => api_failure(reason.clone(), e),
        None => RunUpdate::failure(reason.clone()),
    };
    finish(rec, RunStatus::Dead, "submit outcome unknown", update, policy, now)
}

fn submit_job(rec: &RunRecord, after: Duration) -> Job {
    Job::Submit { run: rec.id, after }
}

fn loaded(rec: &RunRecord, policy: &WorkerConfig, now: u64) -> Decision<Need> {
    if let Some(act) = super::cancelled(rec, policy, now) {
        return act.into();
    }
    match rec.status {
        s if s.is_terminal() => resume_webhook(rec, policy).into(),
        // A synchronous run whose answer was stored with `submitted` but
        // whose end was not (the process stopped in between, or the step
        // goes on right after storing it).
        RunStatus::Submitted if rec.remote_id.is_none() && rec.flavor.is_synchronous() => {
            complete_from_record(rec, policy, now).into()
        }
        // Past its deadline and still going (the sweeper found it: its poll
        // chain was lost, and pushing a poll whose id the queue still holds
        // would do nothing): end it here.
        RunStatus::Submitted | RunStatus::Queued | RunStatus::Running if now >= rec.deadline_ms => {
            let update = RunUpdate::failure(format!("still {} at the run deadline", rec.status));
            finish(rec, RunStatus::TimedOut, "run deadline passed", update, policy, now).into()
        }
        // Already submitted: the remote run exists, so never submit again;
        // make sure its poll chain runs (the job id dedupes the push).
        RunStatus::Submitted | RunStatus::Queued | RunStatus::Running => {
            Act::push(poll_job(rec, rec.poll_attempts, Duration::ZERO)).into()
        }
        // An operator holds its flavor or action (Genesys is down for it,
        // say): park it before anything reaches Genesys, the contract read
        // included; a resume brings it back. A run past its deadline goes
        // on, to time out.
        RunStatus::Accepted | RunStatus::Validated if rec.held.is_some() && now < rec.deadline_ms => {
            Act::nothing().parked().note(Note::LimiterWait("held".into())).into()
        }
        RunStatus::Accepted => match rec.request.revalidate(&policy.limits) {
            Err(v) => reject(rec, &v, policy, now).into(),
            Ok(()) => match rec.request.target() {
                Target::Action { id } => Decision::Need(Need::Contract { action_id: id.clone() }),
                Target::Flow { .. } => validated("inputs checked (flows declare no input contract)", false),
            },
        },
        RunStatus::Validated => before_call(rec, policy),
        _ => Act::nothing().into(),
    }
}

fn validated(cause: &str, secure: bool) -> Decision<Need> {
    let update = RunUpdate { secure: secure.then_some(true), ..RunUpdate::default() };
    Act::new(Write::Transition {
        from: RunStatus::Accepted,
        to: RunStatus::Validated,
        cause: cause.into(),
        update,
        guard: None,
    })
    .and_continue()
    .into()
}

fn reject(rec: &RunRecord, v: &Violations, policy: &WorkerConfig, now: u64) -> Act {
    let update = RunUpdate::failure(v.to_string()).error(RunError::invalid(v));
    finish(rec, RunStatus::Rejected, v.to_string(), update, policy, now)
}

fn contract_checked(
    rec: &RunRecord,
    contract: Contract,
    policy: &WorkerConfig,
    now: u64,
    jitter: &mut Jitter,
) -> Decision<Need> {
    // The request passed this worker's limits when the run was loaded, a
    // moment ago in this same job: only the contract is left to check.
    let request = &rec.request;
    match contract {
        Contract::Read { schema: Some(schema), secure } => {
            let v = schema.validate(request.inputs());
            if v.is_empty() {
                validated("inputs match the contract", secure)
            } else {
                // A secure action's violations may quote its inputs.
                reject(&RunRecord { secure, ..rec.clone() }, &v, policy, now).into()
            }
        }
        Contract::Read { schema: None, secure } => {
            validated("the action declares no input schema: inputs not validated", secure)
        }
        Contract::Unreadable(e) => match e.verdict() {
            Verdict::NotFound => {
                let v = Violations(vec![Violation::new(
                    "/actionId",
                    "not_found",
                    format!(
                        "action {} does not exist (correlation id {})",
                        request.target().id(),
                        e.correlation_id.as_deref().unwrap_or("-")
                    ),
                )]);
                reject(rec, &v, policy, now).into()
            }
            // Before any claim: nothing of a claim or a mark to touch.
            verdict if verdict.is_retryable() => retry_submit(rec, &e, false, policy, now, jitter).into(),
            _ => {
                let update = api_failure(format!("reading the action definition: {e}"), &e);
                finish(rec, RunStatus::Dead, format!("definition unreadable: {e}"), update, policy, now).into()
            }
        },
        Contract::Invalid(why) => {
            let reason = format!("the action's input schema is unusable: {why}");
            finish(rec, RunStatus::Dead, reason.clone(), RunUpdate::failure(reason), policy, now).into()
        }
    }
}

/// The decision point before the Genesys call (the deadline is checked
/// once the claim is held).
fn before_call(rec: &RunRecord, policy: &WorkerConfig) -> Decision<Need> {
    // Requeued after it had been submitted: the remote run exists, so go
    // back to polling it instead of starting a second one.
    if let Some(remote_id) = &rec.remote_id {
        return Act::new(Write::Transition {
            from: RunStatus::Validated,
            to: RunStatus::Submitted,
            cause: format!("resumed: already submitted as {remote_id}"),
            update: RunUpdate::default(),
            guard: None,
        })
        .then_push(poll_job(rec, rec.poll_attempts, Duration::ZERO))
        .into();
    }
    // Only one copy of a submit job may call Genesys at a time. The claim
    // covers getting a permit; marking the call as sent extends it over the
    // slowest call. A copy that finds it held comes back then.
    Decision::Need(Need::Claim { hold: policy.submit_claim })
}

/// The decision point after the Genesys call.
fn answered(
    rec: &RunRecord,
    answer: Result<RemoteRun, ApiError>,
    policy: &WorkerConfig,
    now: u64,
    jitter: &mut Jitter,
) -> Decision<Need> {
    let e = match answer {
        Ok(remote) => return submitted(rec, remote, policy, now, jitter),
        Err(e) => e,
    };
    match e.verdict() {
        // The request may have run even though no answer came back (nothing
        // in the reference says Genesys deduplicates a `runs` submit by its
        // name): a blind retry could run the action twice.
        Verdict::AmbiguousOutcome => unknown_outcome(rec, &e.to_string(), Some(&e), policy, now, jitter).into(),
        v if v.is_retryable() => retry_submit(rec, &e, true, policy, now, jitter).permit(PermitOp::Release).into(),
        // Refused credentials or permissions are gcrun's setup, not the
        // run's fault: dead-letter (requeueable once fixed), not failed.
        Verdict::Refused => {
            finish(rec, RunStatus::Dead, format!("submit refused: {e}"), api_failure(e.to_string(), &e), policy, now)
                .into()
        }
        _ => {
            finish(rec, RunStatus::Failed, format!("submit refused: {e}"), api_failure(e.to_string(), &e), policy, now)
                .into()
        }
    }
}

fn submitted(
    rec: &RunRecord,
    remote: RemoteRun,
    policy: &WorkerConfig,
    now: u64,
    jitter: &mut Jitter,
) -> Decision<Need> {
    let mut update = RunUpdate::submitted(remote.remote_id.clone(), remote.remote_status.clone(), now);
    // A synchronous answer is stored with `submitted`, so a crash before
    // the end is recorded cannot lose it.
    match &remote.phase {
        RemotePhase::Completed { outputs } => update = update.outputs(outputs.clone()),
        RemotePhase::Failed { code, message } => update = update.error(RunError::new(code, message)),
        _ => {}
    }
    let cause = match &remote.remote_id {
        Some(rid) => format!("submitted as {rid}"),
        None => "executed".to_string(),
    };
    // The first poll, and what it was aimed at (0: not aimed, the
    // schedule's), which its answer then teaches (see crate::durations).
    let first_poll = remote.remote_id.is_some().then(|| next_poll(rec, 0, None, policy, now, jitter));
    if let Some(after) = first_poll {
        update.first_poll_aim_ms = Some(rec.expected_ms.map_or(0, |_| after.as_millis() as u64));
    }
    let act = Act::new(Write::Transition {
        from: RunStatus::Validated,
        to: RunStatus::Submitted,
        cause,
        update,
        guard: None,
    });
    if remote.remote_id.is_none() {
        // Synchronous: the answer is the end; decide it on the record as written.
        return act.and_continue().into();
    }
    let first = RunRecord { remote_id: remote.remote_id, ..rec.clone() };
    act.then_push(poll_job(&first, 0, first_poll.unwrap_or_default())).into()
}

/// Ends a synchronous run from the answer stored with its `submitted`
/// transition.
pub(crate) fn complete_from_record(rec: &RunRecord, policy: &WorkerConfig, now: u64) -> Act {
    match (&rec.outputs, &rec.error) {
        (Some(_), _) => finish(rec, RunStatus::Completed, "completed", RunUpdate::default(), policy, now),
        (None, Some(error)) => {
            finish(rec, RunStatus::Failed, format!("failed: {}", error.code), RunUpdate::default(), policy, now)
        }
        (None, None) => finish(
            rec,
            RunStatus::Dead,
            "answer lost",
            RunUpdate::failure("submitted, but its answer was not recorded"),
            policy,
            now,
        ),
    }
}

/// A transient failure before the remote run exists: try the submit again
/// later, or give up after `max_submit_attempts`. `answered_call`: the
/// failure is this copy's own call's answer (it did not run), so its claim
/// and mark are cleared; otherwise (the contract could not be read, before
/// any claim) neither is touched.
fn retry_submit(
    rec: &RunRecord,
    e: &ApiError,
    answered_call: bool,
    policy: &WorkerConfig,
    now: u64,
    jitter: &mut Jitter,
) -> Act {
    let verdict = e.verdict();
    let retries = rec.retries + 1;
    let mut act = if retries >= policy.max_submit_attempts {
        let cause = format!("gave up after {retries} transient submit failures; last: {e}");
        finish(rec, RunStatus::Dead, cause, api_failure(e.to_string(), e).retries(retries), policy, now)
    } else {
        // One step of the retry chain: of duplicate copies that met the
        // same failure, one moves the counter and schedules the next try.
        let mut update = RunUpdate::failure(e.to_string()).correlated(e.correlation_id.clone());
        if answered_call {
            update = update.call_not_run();
        }
        let after = policy.submit_schedule.delay_after(retries - 1, verdict.retry_after(), jitter);
        Act::new(Write::Advance { counter: Counter::Retries, expected: rec.retries, status: rec.status, update })
            .then_push(submit_job(rec, after))
    };
    act.pause = super::pause_for(verdict);
    act.note(Note::Retry { stage: "submit", reason: e.label() })
}
