use std::sync::Arc;
use std::time::Duration;

use gcrun_genesys::{RemotePhase, RemoteRun};
use gcrun_model::{Flavor, InputSchema, Jitter, RunStatus, WebhookStatus};
use gcrun_queue::Job;
use gcrun_store::{Claim, Counter, Denied};
use gcrun_worker::step::submit::{Contract, Need, Observation, decide};
use gcrun_worker::step::{Note, PermitOp, Then, Write};
use serde_json::json;

use super::*;

fn run(rec: &RunRecord, obs: Observation) -> Decision<Need> {
    decide(rec, obs, &policy(), NOW, &mut jitter())
}

fn schema() -> Arc<InputSchema> {
    let s = json!({"type": "object", "required": ["customerId"], "properties": {"customerId": {"type": "string", "maxLength": 4}}});
    Arc::new(InputSchema::compile(&s).unwrap())
}

fn submit_after(a: &gcrun_worker::step::Act) -> Duration {
    match a.jobs[..] {
        [Job::Submit { after, .. }] => after,
        _ => panic!("expected one submit job: {a:?}"),
    }
}

#[test]
fn an_accepted_action_run_asks_for_its_contract() {
    let rec = record(Flavor::Runs, RunStatus::Accepted);
    assert_eq!(need(run(&rec, Observation::Loaded)), Need::Contract { action_id: ACTION.into() });
}

#[test]
fn an_accepted_flow_run_is_validated_and_goes_on() {
    let rec = record(Flavor::Workflow, RunStatus::Accepted);
    let a = act(run(&rec, Observation::Loaded));
    assert_eq!((transition(&a).0, transition(&a).1), (RunStatus::Accepted, RunStatus::Validated));
    assert_eq!(a.then, Then::Continue);
}

#[test]
fn a_request_that_no_longer_parses_is_rejected_with_its_violations() {
    let mut rec = record(Flavor::Runs, RunStatus::Accepted);
    rec.request = stored_request(json!({"flavor": "runs", "actionId": ACTION, "inputs": {"nested": {"no": 1}}}));
    let a = act(run(&rec, Observation::Loaded));
    assert_ends_with_webhook(&a, &rec, RunStatus::Rejected);
    let error = update(&a).error.clone().unwrap();
    assert_eq!((error.code.as_str(), error.violations[0].path.as_str()), ("invalid_request", "/inputs/nested"));
}

#[test]
fn inputs_that_break_the_contract_are_rejected_with_every_violation() {
    let mut rec = record(Flavor::Runs, RunStatus::Accepted);
    rec.request =
        stored_request(json!({"flavor": "runs", "actionId": ACTION, "inputs": {"customerId": "far-too-long"}}));
    let a = act(run(&rec, Observation::Contract(Contract::Read { schema: Some(schema()), secure: false })));
    assert_ends_with_webhook(&a, &rec, RunStatus::Rejected);
    assert!(transition(&a).2.contains("/inputs/customerId"), "{a:?}");
}

#[test]
fn inputs_that_match_the_contract_are_validated_and_go_on() {
    let rec = record(Flavor::Runs, RunStatus::Accepted);
    let a = act(run(&rec, Observation::Contract(Contract::Read { schema: Some(schema()), secure: false })));
    assert_eq!(transition(&a), (RunStatus::Accepted, RunStatus::Validated, "inputs match the contract"));
    assert_eq!(a.then, Then::Continue);
}

#[test]
fn an_action_without_a_contract_goes_on_and_its_history_says_so() {
    let rec = record(Flavor::Runs, RunStatus::Accepted);
    let a = act(run(&rec, Observation::Contract(Contract::Read { schema: None, secure: false })));
    let (_, to, cause) = transition(&a);
    assert_eq!(to, RunStatus::Validated);
    assert!(cause.contains("not validated"), "{cause}");
}

#[test]
fn an_unknown_action_is_rejected_as_not_found() {
    let rec = record(Flavor::Runs, RunStatus::Accepted);
    let a = act(run(&rec, Observation::Contract(Contract::Unreadable(http(404, None)))));
    assert_ends_with_webhook(&a, &rec, RunStatus::Rejected);
    assert!(transition(&a).2.contains("does not exist") && transition(&a).2.contains("cid-1"), "{a:?}");
}

#[test]
fn a_transient_definition_failure_retries_the_submit_later() {
    let rec = record(Flavor::Runs, RunStatus::Accepted);
    let a = act(run(&rec, Observation::Contract(Contract::Unreadable(http(503, None)))));
    // One step of the retry chain: a duplicate copy that met the same
    // failure finds the counter moved and pushes nothing.
    assert!(matches!(a.write, Write::Advance { counter: Counter::Retries, expected: 0, .. }), "{a:?}");
    assert!(submit_after(&a) >= Duration::from_millis(500));
    assert_eq!(a.pause, None);
    // Before any claim: it must not clear a claim or a sent mark another
    // copy may hold by now (that copy's call would be made twice).
    assert_eq!((update(&a).submit_claim_until, update(&a).submit_sent_ms), (None, None));
}

#[test]
fn refused_credentials_for_the_definition_dead_letter_the_run() {
    let rec = record(Flavor::Runs, RunStatus::Accepted);
    let a = act(run(&rec, Observation::Contract(Contract::Unreadable(refused_credentials()))));
    assert_ends_with_webhook(&a, &rec, RunStatus::Dead);
    assert!(transition(&a).2.starts_with("definition unreadable"));
}

#[test]
fn an_unusable_contract_dead_letters_the_run_instead_of_skipping_validation() {
    let rec = record(Flavor::Runs, RunStatus::Accepted);
    let a = act(run(&rec, Observation::Contract(Contract::Invalid("bad keyword".into()))));
    assert_ends_with_webhook(&a, &rec, RunStatus::Dead);
}

fn claimed() -> Observation {
    Observation::Claim(Claim::Claimed { token: "t-1".into() })
}

#[test]
fn a_validated_run_past_its_deadline_times_out_once_it_holds_the_claim_before_any_call() {
    let mut rec = record(Flavor::Runs, RunStatus::Validated);
    rec.deadline_ms = NOW;
    // Not before the claim: another copy may have the submit in flight.
    assert!(matches!(need(run(&rec, Observation::Loaded)), Need::Claim { .. }));
    let a = act(run(&rec, claimed()));
    assert_ends_with_webhook(&a, &rec, RunStatus::TimedOut);
}

#[test]
fn a_copy_past_the_deadline_leaves_a_submit_in_flight_alone() {
    let mut rec = record(Flavor::Runs, RunStatus::Validated);
    rec.deadline_ms = NOW;
    let a = act(run(&rec, Observation::Claim(Claim::Held { left: Duration::from_secs(60) })));
    assert_eq!((a.write.clone(), a.moves_to()), (Write::Nothing, None), "comes back later, ends nothing");
    submit_after(&a);
}

#[test]
fn a_requeued_run_that_was_submitted_resumes_polling() {
    let mut rec = record(Flavor::Runs, RunStatus::Validated);
    rec.remote_id = Some("remote-9".into());
    rec.poll_attempts = 3;
    let a = act(run(&rec, Observation::Loaded));
    assert_eq!(transition(&a).1, RunStatus::Submitted);
    assert!(transition(&a).2.contains("remote-9"));
    assert!(matches!(a.jobs[..], [Job::Poll { attempt: 3, after: Duration::ZERO, .. }]), "{a:?}");
}

#[test]
fn a_validated_run_claims_the_submit_then_marks_the_call_and_claims_it_for_the_call() {
    let rec = record(Flavor::Runs, RunStatus::Validated);
    // Periods, not times: Redis's clock times them, not this worker's.
    assert_eq!(need(run(&rec, Observation::Loaded)), Need::Claim { hold: policy().submit_claim });
    let permit = Observation::Permit { token: "t-1".into(), outcome: Ok(()) };
    assert_eq!(need(run(&rec, permit)), Need::MarkSent { token: "t-1".into(), hold: policy().submit_call });
}

#[test]
fn a_held_claim_comes_back_when_it_ends_and_a_lost_one_at_once() {
    let rec = record(Flavor::Runs, RunStatus::Validated);
    let a = act(run(&rec, Observation::Claim(Claim::Held { left: Duration::from_secs(5) })));
    assert_eq!(a.write, Write::Nothing);
    let after = submit_after(&a);
    assert!(after >= Duration::from_secs(5) && after <= Duration::from_millis(5_250), "{after:?}");
    let a = act(run(&rec, Observation::Claim(Claim::NotValidated)));
    assert_eq!(submit_after(&a), Duration::ZERO);
    assert_eq!(need(run(&rec, claimed())), Need::Permit { token: "t-1".into() });
}

#[test]
fn no_permit_gives_the_claim_back_and_waits_for_one() {
    let rec = record(Flavor::Runs, RunStatus::Validated);
    let denied =
        Observation::Permit { token: "t-1".into(), outcome: Err((Duration::from_secs(2), Denied::Concurrency)) };
    let a = act(run(&rec, denied));
    // It waits for a slot on the list a release wakes; its job is only the
    // safety net, far out (not a re-push every second).
    assert_eq!(a.permit, PermitOp::Wait);
    assert!(submit_after(&a) >= policy().slot_wait, "{:?}", submit_after(&a));
    assert!(
        // The claim back, only if it is still this copy's; never the sent
        // mark (this copy made no call).
        matches!(a.write, Write::ReleaseClaim { ref token } if token == "t-1"),
        "{a:?}"
    );
    assert!(submit_after(&a) >= Duration::from_secs(2));
    assert_eq!(a.notes, vec![Note::LimiterWait("concurrency".into())]);
}

#[test]
fn the_call_is_made_only_once_it_is_marked_as_sent() {
    let rec = record(Flavor::Runs, RunStatus::Validated);
    let Need::Submit { request, token } = need(run(&rec, Observation::Marked(Some("t-1".into())))) else { panic!() };
    assert_eq!((request.target().id(), token.as_str()), (ACTION, "t-1"));
    // The claim lapsed while this copy waited for its permit, and another
    // copy took it: no call, and the permit goes back.
    let a = act(run(&rec, Observation::Marked(None)));
    // Its permit is the run's, maybe the other copy's now: kept; and it
    // comes back, so a claim nobody holds is taken again.
    assert_eq!((a.write.clone(), a.permit), (Write::Nothing, PermitOp::Keep));
    assert_eq!(submit_after(&a), Duration::ZERO);
}

#[test]
fn a_call_marked_as_sent_whose_claim_lapsed_without_an_answer_is_an_unknown_outcome() {
    for flavor in [Flavor::Runs, Flavor::Execute, Flavor::Workflow] {
        let rec = record(flavor, RunStatus::Validated);
        let a = act(run(&rec, Observation::Claim(Claim::SentWithoutAnswer { sent_ms: NOW - 300_000 })));
        assert_ends_with_webhook(&a, &rec, RunStatus::Dead);
        assert_eq!(transition(&a).2, "submit outcome unknown");
        let reason = update(&a).last_error.clone().unwrap();
        assert!(reason.starts_with("sent; answer lost: check Genesys, then requeue or purge"), "{reason}");
    }
}

#[test]
fn an_async_submit_records_the_remote_run_and_schedules_the_first_poll() {
    let rec = record(Flavor::Runs, RunStatus::Validated);
    let remote =
        RemoteRun { remote_id: Some("r-1".into()), phase: RemotePhase::Queued, remote_status: "queued".into() };
    let a = act(run(&rec, Observation::Answer(Ok(remote))));
    assert_eq!(transition(&a), (RunStatus::Validated, RunStatus::Submitted, "submitted as r-1"));
    assert_eq!(update(&a).remote_id.as_deref(), Some("r-1"));
    assert_eq!(update(&a).submitted_ms, Some(NOW));
    let [Job::Poll { attempt: 0, after, generation, .. }] = a.jobs[..] else { panic!("{a:?}") };
    assert_eq!(generation, rec.deadline_ms);
    assert!(after >= Duration::from_secs(1));
    assert_eq!(a.permit, PermitOp::Keep, "the remote run holds its slot");
}

#[test]
fn the_first_poll_is_aimed_just_past_what_the_actions_runs_take() {
    let remote = || RemoteRun { remote_id: Some("r-1".into()), phase: RemotePhase::Queued, remote_status: "q".into() };
    let first_poll = |expected_ms: Option<u64>, seed: u64| {
        let rec = RunRecord { expected_ms, ..record(Flavor::Runs, RunStatus::Validated) };
        let a = act(decide(&rec, Observation::Answer(Ok(remote())), &policy(), NOW, &mut Jitter::seeded(seed)));
        let [Job::Poll { attempt: 0, after, .. }] = a.jobs[..] else { panic!("{a:?}") };
        after
    };
    for seed in 0..50 {
        // Runs of 2.4 s: at the aim, spread by at most 120 ms.
        let after = first_poll(Some(2_400), seed);
        assert!((2_400..=2_520).contains(&(after.as_millis() as u64)), "{after:?}");
        // Long runs: at most the schedule's cap (30 s).
        assert_eq!(first_poll(Some(600_000), seed), Duration::from_secs(30));
        // Short runs, or none seen yet: the schedule, never under a second.
        assert_eq!(first_poll(Some(300), seed), Duration::from_secs(1));
        assert_eq!(first_poll(None, seed), Duration::from_secs(1));
    }
}

#[test]
fn a_synchronous_answer_is_stored_first_then_ends_the_run() {
    let rec = record(Flavor::Execute, RunStatus::Validated);
    let remote = RemoteRun {
        remote_id: None,
        phase: RemotePhase::Completed { outputs: json!({"tier": "gold"}) },
        remote_status: "completed".into(),
    };
    let a = act(run(&rec, Observation::Answer(Ok(remote))));
    assert_eq!(transition(&a).1, RunStatus::Submitted);
    assert_eq!(update(&a).outputs, Some(json!({"tier": "gold"})));
    assert_eq!((a.then, a.jobs.len()), (Then::Continue, 0));
    // The step goes on with the record as written.
    let mut stored = rec.clone();
    stored.apply(a.moves_to(), update(&a), NOW);
    let end = act(run(&stored, Observation::Loaded));
    assert_ends_with_webhook(&end, &stored, RunStatus::Completed);
}

#[test]
fn a_stored_synchronous_answer_ends_the_run_after_a_crash() {
    let mut rec = record(Flavor::Execute, RunStatus::Submitted);
    rec.error = Some(gcrun_model::RunError::new("crm_down", "x"));
    let a = act(run(&rec, Observation::Loaded));
    assert_ends_with_webhook(&a, &rec, RunStatus::Failed);
    assert_eq!(transition(&a).2, "failed: crm_down");
    rec.error = None;
    let a = act(run(&rec, Observation::Loaded));
    assert_eq!((transition(&a).1, transition(&a).2), (RunStatus::Dead, "answer lost"));
}

#[test]
fn an_unknown_outcome_is_dead_lettered_not_retried_for_every_flavor() {
    // `runs` too: nothing in the reference says Genesys deduplicates a
    // submit by its name (retrying it made 25 duplicate runs in 2,000).
    for flavor in [Flavor::Runs, Flavor::Execute, Flavor::Workflow] {
        let rec = record(flavor, RunStatus::Validated);
        let a = act(run(&rec, Observation::Answer(Err(ambiguous()))));
        assert_ends_with_webhook(&a, &rec, RunStatus::Dead);
        assert_eq!(transition(&a).2, "submit outcome unknown");
    }
}

#[test]
fn an_unknown_outcome_of_a_target_opted_in_to_at_least_once_is_sent_again_and_counted() {
    let rec = record(Flavor::Runs, RunStatus::Validated);
    let opted = gcrun_worker::WorkerConfig { at_least_once: vec![ACTION.into()], ..policy() };
    for obs in [Observation::Answer(Err(ambiguous())), Observation::Claim(Claim::SentWithoutAnswer { sent_ms: NOW })] {
        let a = act(decide(&rec, obs, &opted, NOW, &mut jitter()));
        let Write::Advance { counter: Counter::Retries, expected: 0, status: RunStatus::Validated, ref update } =
            a.write
        else {
            panic!("{a:?}")
        };
        assert_eq!((update.submit_claim_until, update.submit_sent_ms), (Some(0), Some(0)), "claim and mark cleared");
        assert_eq!(a.permit, PermitOp::Release);
        assert_eq!(a.notes, vec![Note::Retry { stage: "submit", reason: "unknown_outcome".into() }]);
        submit_after(&a);
    }
}

#[test]
fn a_429_pauses_every_worker_for_the_servers_wait_and_retries_after_it() {
    let rec = record(Flavor::Runs, RunStatus::Validated);
    let a = act(run(&rec, Observation::Answer(Err(http(429, Some(7))))));
    assert_eq!(a.pause, Some(Duration::from_secs(7)));
    let after = submit_after(&a);
    assert!(after >= Duration::from_secs(7) && after <= Duration::from_millis(7_700), "{after:?}");
    assert_eq!(a.permit, PermitOp::Release);
    assert!(a.notes.contains(&Note::Retry { stage: "submit", reason: "429".into() }));
    // Without Retry-After: everyone waits a second.
    let a = act(run(&rec, Observation::Answer(Err(http(429, None)))));
    assert_eq!(a.pause, Some(Duration::from_secs(1)));
}

#[test]
fn a_5xx_retries_until_the_attempts_run_out() {
    let mut rec = record(Flavor::Runs, RunStatus::Validated);
    rec.retries = 3;
    let a = act(run(&rec, Observation::Answer(Err(http(503, None)))));
    assert!(matches!(a.write, Write::Advance { counter: Counter::Retries, expected: 3, .. }), "{a:?}");
    assert_eq!(update(&a).correlation_id.as_deref(), Some("cid-1"));
    // Its own call was answered (it did not run): claim and mark cleared.
    assert_eq!((update(&a).submit_claim_until, update(&a).submit_sent_ms), (Some(0), Some(0)));
    assert_eq!(a.pause, None);
    rec.retries = policy().max_submit_attempts - 1;
    let a = act(run(&rec, Observation::Answer(Err(http(503, None)))));
    assert_ends_with_webhook(&a, &rec, RunStatus::Dead);
    assert!(transition(&a).2.starts_with("gave up after 20 transient submit failures"));
}

#[test]
fn refused_credentials_or_permissions_dead_letter_the_run() {
    for e in [http(401, None), http(403, None), refused_credentials()] {
        let rec = record(Flavor::Runs, RunStatus::Validated);
        let a = act(run(&rec, Observation::Answer(Err(e))));
        assert_ends_with_webhook(&a, &rec, RunStatus::Dead);
    }
}

#[test]
fn a_permanent_refusal_fails_the_run() {
    for e in [http(404, None), http(400, None), http(422, None), action_failed()] {
        let rec = record(Flavor::Execute, RunStatus::Validated);
        let a = act(run(&rec, Observation::Answer(Err(e))));
        assert_ends_with_webhook(&a, &rec, RunStatus::Failed);
        assert_eq!(update(&a).error.as_ref().unwrap().correlation_id.as_deref(), Some("cid-1"));
    }
}

#[test]
fn an_ended_run_only_makes_sure_its_pending_webhook_is_on_its_way() {
    let mut rec = record(Flavor::Runs, RunStatus::Completed);
    rec.completed_ms = Some(NOW - 10);
    rec.webhook.status = Some(WebhookStatus::Pending);
    rec.webhook.attempts = 2;
    let a = act(run(&rec, Observation::Loaded));
    assert_eq!(a.write, Write::Nothing);
    assert!(matches!(a.jobs[..], [Job::Webhook { attempt: 2, generation, .. }] if generation == NOW - 10), "{a:?}");
    rec.webhook.status = Some(WebhookStatus::Delivered);
    assert_eq!(act(run(&rec, Observation::Loaded)), gcrun_worker::step::Act::nothing());
}

#[test]
fn a_submitted_run_is_never_submitted_again_only_polled() {
    let mut rec = record(Flavor::Runs, RunStatus::Running);
    rec.poll_attempts = 4;
    let a = act(run(&rec, Observation::Loaded));
    assert!(matches!(a.jobs[..], [Job::Poll { attempt: 4, after: Duration::ZERO, .. }]), "{a:?}");
    assert_eq!(a.write, Write::Nothing);
}

#[test]
fn a_run_without_a_webhook_url_ends_without_one() {
    let rec = record(Flavor::Runs, RunStatus::Validated);
    let no_hook = WorkerConfig::default();
    let a = act(decide(&rec, Observation::Answer(Err(http(400, None))), &no_hook, NOW, &mut jitter()));
    assert_eq!(transition(&a).1, RunStatus::Failed);
    assert!(a.jobs.is_empty() && update(&a).webhook_status.is_none(), "{a:?}");
}

#[test]
fn an_in_flight_run_past_its_deadline_is_ended_by_a_late_submit_job() {
    // The sweeper's job for a run whose poll chain was lost: pushing a poll
    // the queue still remembers would do nothing, so the deadline ends it.
    let mut rec = record(Flavor::Workflow, RunStatus::Running);
    rec.deadline_ms = NOW - 1;
    let a = act(run(&rec, Observation::Loaded));
    assert_ends_with_webhook(&a, &rec, RunStatus::TimedOut);
}

#[test]
fn what_a_write_did_is_mirrored_in_memory() {
    use gcrun_worker::step::mirror;
    let mut rec = record(Flavor::Runs, RunStatus::Running);
    let update = gcrun_store::RunUpdate::failure("x");
    let advance = Write::Advance { counter: Counter::Poll, expected: 0, status: RunStatus::Running, update };
    mirror(&mut rec, &advance, NOW);
    assert_eq!((rec.poll_attempts, rec.last_error.as_deref()), (1, Some("x")));
    let retry = Write::Advance {
        counter: Counter::Retries,
        expected: 0,
        status: RunStatus::Running,
        update: Default::default(),
    };
    mirror(&mut rec, &retry, NOW);
    assert_eq!(rec.retries, 1);
    rec.status = RunStatus::Completed;
    rec.webhook.status = Some(WebhookStatus::Pending);
    let delivered = Write::Webhook { expected: 0, attempt: gcrun_store::WebhookAttempt::Delivered { at_ms: NOW } };
    mirror(&mut rec, &delivered, NOW);
    assert_eq!((rec.webhook.status, rec.webhook.attempts), (Some(WebhookStatus::Delivered), 1));
}

#[test]
fn debug_output_never_shows_a_webhook_urls_query() {
    let config = WorkerConfig {
        default_webhook_url: Some("https://hooks.example.com/in?token=s3cret".parse().unwrap()),
        ..WorkerConfig::default()
    };
    let shown = format!("{config:?}");
    assert!(shown.contains("hooks.example.com/in") && !shown.contains("s3cret"), "{shown}");
    let out = gcrun_worker::webhook::Outgoing {
        url: "https://hooks.example.com/in?token=s3cret".parse().unwrap(),
        event_id: "e".into(),
        body: json!({}),
    };
    assert!(!format!("{out:?}").contains("s3cret"));
}

#[test]
fn a_rate_or_pause_denial_comes_back_when_the_limiter_says_a_rate_wait_exactly_then() {
    let rec = record(Flavor::Runs, RunStatus::Validated);
    for why in [Denied::Rate, Denied::Paused] {
        let denied = Observation::Permit { token: "t-1".into(), outcome: Err((Duration::from_millis(700), why)) };
        let a = act(run(&rec, denied));
        assert_eq!(a.permit, PermitOp::Keep, "{why:?}: not a slot wait");
        let after = submit_after(&a);
        assert!(after >= Duration::from_millis(700) && after < Duration::from_secs(2), "{why:?}: {after:?}");
        // The rate's moment is this run's own reservation: exact.
        assert!(why != Denied::Rate || after == Duration::from_millis(700), "{after:?}");
    }
}

#[test]
fn a_secure_actions_run_is_marked_secure_and_its_rejection_quotes_none_of_its_inputs() {
    let rec = record(Flavor::Runs, RunStatus::Accepted);
    let a = act(run(&rec, Observation::Contract(Contract::Read { schema: Some(schema()), secure: true })));
    assert_eq!(transition(&a).1, RunStatus::Validated);
    assert_eq!(update(&a).secure, Some(true));

    let mut rec = record(Flavor::Runs, RunStatus::Accepted);
    rec.request =
        stored_request(json!({"flavor": "runs", "actionId": ACTION, "inputs": {"customerId": "s3cret-far-too-long"}}));
    let a = act(run(&rec, Observation::Contract(Contract::Read { schema: Some(schema()), secure: true })));
    assert_eq!(transition(&a).1, RunStatus::Rejected);
    let u = update(&a);
    let shown = format!("{} {:?} {:?} {:?}", transition(&a).2, u.last_error, u.error, u.request);
    assert!(!shown.contains("s3cret"), "{shown}");
    let error = u.error.clone().unwrap();
    assert_eq!((error.code.as_str(), error.violations[0].path.as_str()), ("invalid_request", "/inputs/customerId"));
    assert!(u.request.as_ref().unwrap().inputs().is_empty() && u.clear_outputs, "inputs and outputs erased");
}
