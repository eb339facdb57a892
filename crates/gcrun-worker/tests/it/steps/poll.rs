use std::time::Duration;

use gcrun_genesys::{RemotePhase, RemoteRun};
use gcrun_model::{Flavor, RunStatus, WebhookStatus};
use gcrun_queue::Job;
use gcrun_store::Counter;
use gcrun_worker::step::poll::{Need, Observation, decide};
use gcrun_worker::step::{Note, PermitOp, Write};
use serde_json::json;

use super::*;

fn run(rec: &RunRecord, attempt: u32, obs: Observation) -> Decision<Need> {
    decide(rec, attempt, obs, &policy(), NOW, &mut jitter())
}

fn remote(phase: RemotePhase, status: &str) -> Observation {
    Observation::Answer(Ok(RemoteRun { remote_id: Some("remote-1".into()), phase, remote_status: status.into() }))
}

fn next_poll(a: &gcrun_worker::step::Act) -> (u32, Duration) {
    match a.jobs[..] {
        [Job::Poll { attempt, after, .. }] => (attempt, after),
        _ => panic!("expected one poll job: {a:?}"),
    }
}

#[test]
fn a_running_run_asks_for_its_remote_state() {
    let rec = record(Flavor::Runs, RunStatus::Submitted);
    assert_eq!(need(run(&rec, 0, Observation::Loaded)), Need::Status { remote_id: "remote-1".into() });
}

#[test]
fn an_ended_run_makes_sure_its_webhook_is_on_its_way() {
    let mut rec = record(Flavor::Runs, RunStatus::Completed);
    rec.webhook.status = Some(WebhookStatus::Pending);
    // The first attempt may be in flight in the job that ended the run
    // (made inline): its job waits out the longest that attempt can take.
    let a = act(run(&rec, 0, Observation::Loaded));
    let longest = policy().webhook_timeout + Duration::from_secs(5);
    assert!(matches!(a.jobs[..], [Job::Webhook { attempt: 0, after, .. }] if after == longest), "{a:?}");
    // Without inline first attempts, or past the first, it is due now.
    let not_inline = gcrun_worker::WorkerConfig { webhook_inline: false, ..policy() };
    let a = act(decide(&rec, 0, Observation::Loaded, &not_inline, NOW, &mut jitter()));
    assert!(matches!(a.jobs[..], [Job::Webhook { attempt: 0, after: Duration::ZERO, .. }]), "{a:?}");
    rec.webhook.attempts = 2;
    let a = act(run(&rec, 0, Observation::Loaded));
    assert!(matches!(a.jobs[..], [Job::Webhook { attempt: 2, after: Duration::ZERO, .. }]), "{a:?}");
}

#[test]
fn a_poll_from_before_a_requeue_does_nothing() {
    let rec = record(Flavor::Runs, RunStatus::Accepted);
    assert_eq!(act(run(&rec, 0, Observation::Loaded)), gcrun_worker::step::Act::nothing());
}

#[test]
fn a_copy_whose_successor_may_be_lost_pushes_it_again_an_older_one_nothing() {
    let mut rec = record(Flavor::Runs, RunStatus::Running);
    rec.poll_attempts = 3;
    let a = act(run(&rec, 2, Observation::Loaded));
    assert_eq!((a.write.clone(), next_poll(&a).0), (Write::Nothing, 3));
    assert_eq!(act(run(&rec, 1, Observation::Loaded)), gcrun_worker::step::Act::nothing());
}

#[test]
fn a_submitted_run_without_a_remote_id_is_dead_lettered() {
    let mut rec = record(Flavor::Runs, RunStatus::Submitted);
    rec.remote_id = None;
    let a = act(run(&rec, 0, Observation::Loaded));
    assert_ends_with_webhook(&a, &rec, RunStatus::Dead);
}

#[test]
fn a_run_past_its_deadline_times_out() {
    let mut rec = record(Flavor::Workflow, RunStatus::Running);
    rec.deadline_ms = NOW;
    let a = act(run(&rec, 0, Observation::Loaded));
    assert_ends_with_webhook(&a, &rec, RunStatus::TimedOut);
    assert_eq!(update(&a).last_error.as_deref(), Some("still running at the run deadline"));
}

#[test]
fn a_run_that_exhausts_its_polls_is_dead_lettered() {
    let mut rec = record(Flavor::Runs, RunStatus::Running);
    let max = policy().max_poll_attempts;
    rec.poll_attempts = max;
    let a = act(run(&rec, max, Observation::Loaded));
    assert_ends_with_webhook(&a, &rec, RunStatus::Dead);
    assert_eq!(transition(&a).2, "too many polls");
}

#[test]
fn a_new_remote_state_is_a_transition_that_also_moves_the_counter() {
    let rec = record(Flavor::Runs, RunStatus::Submitted);
    let a = act(run(&rec, 0, remote(RemotePhase::Running, "running")));
    assert_eq!(transition(&a), (RunStatus::Submitted, RunStatus::Running, "remote status running"));
    assert_eq!(update(&a).poll_attempts, Some(1));
    // A stale copy of this poll must not apply: the move is guarded by the counter.
    assert!(matches!(a.write, Write::Transition { guard: Some((Counter::Poll, 0)), .. }), "{a:?}");
    assert_eq!(a.permit, PermitOp::Renew);
    let (attempt, after) = next_poll(&a);
    assert_eq!(attempt, 1);
    assert!(after >= Duration::from_secs(1) && after <= Duration::from_secs(2), "{after:?}");
}

#[test]
fn the_same_remote_state_only_advances_the_counter() {
    let rec = record(Flavor::Runs, RunStatus::Running);
    let a = act(run(&rec, 0, remote(RemotePhase::Running, "running")));
    assert!(matches!(a.write, Write::Advance { counter: Counter::Poll, expected: 0, .. }), "{a:?}");
    assert_eq!(next_poll(&a).0, 1);
}

#[test]
fn a_transient_run_error_is_counted_and_polled_again() {
    let mut rec = record(Flavor::Runs, RunStatus::Running);
    rec.retries = 2;
    let phase = RemotePhase::Transient { code: "compute_unavailable".into(), message: "busy".into() };
    let a = act(run(&rec, 0, remote(phase, "failed")));
    assert!(matches!(a.write, Write::Advance { .. }));
    assert_eq!(update(&a).retries, Some(3));
    assert!(a.notes.contains(&Note::Retry { stage: "poll", reason: "compute_unavailable".into() }));
}

#[test]
fn a_completed_run_ends_with_its_outputs() {
    let rec = record(Flavor::Runs, RunStatus::Running);
    let a = act(run(&rec, 0, remote(RemotePhase::Completed { outputs: json!({"x": 1}) }, "completed")));
    assert_ends_with_webhook(&a, &rec, RunStatus::Completed);
    assert_eq!(update(&a).outputs, Some(json!({"x": 1})));
}

#[test]
fn a_secure_run_ends_without_its_data_unless_it_asked_to_keep_it() {
    let mut rec = record(Flavor::Runs, RunStatus::Running);
    rec.secure = true;
    let done = || remote(RemotePhase::Completed { outputs: json!({"score": 87}) }, "completed");
    let a = act(run(&rec, 0, done()));
    assert_ends_with_webhook(&a, &rec, RunStatus::Completed);
    let u = update(&a);
    assert!(u.outputs.is_none() && u.clear_outputs, "outputs not kept: {u:?}");
    assert!(u.request.as_ref().unwrap().inputs().is_empty(), "inputs erased");
    assert!(transition(&a).2.contains("withheld"), "{a:?}");
    // Asked to keep them: kept, as for any run.
    rec.request = gcrun_model::RunRequest::builder(Flavor::Runs, ACTION)
        .input("customerId", "c-1")
        .include_secure_data(true)
        .build(&gcrun_model::RequestLimits::default())
        .unwrap();
    let a = act(run(&rec, 0, done()));
    let u = update(&a);
    assert_eq!((u.outputs.clone(), u.request.is_none(), u.clear_outputs), (Some(json!({"score": 87})), true, false));
}

#[test]
fn a_failed_run_ends_with_its_error() {
    let rec = record(Flavor::Workflow, RunStatus::Running);
    let phase = RemotePhase::Failed { code: "ERROR".into(), message: "flow broke".into() };
    let a = act(run(&rec, 0, remote(phase, "ERROR")));
    assert_ends_with_webhook(&a, &rec, RunStatus::Failed);
    assert_eq!(update(&a).error, Some(gcrun_model::RunError::new("ERROR", "flow broke")));
}

#[test]
fn a_429_pauses_everyone_and_the_next_poll_waits_for_retry_after() {
    let rec = record(Flavor::Runs, RunStatus::Running);
    let a = act(run(&rec, 0, Observation::Answer(Err(http(429, Some(5))))));
    assert_eq!(a.pause, Some(Duration::from_secs(5)));
    assert!(matches!(a.write, Write::Advance { .. }));
    assert!(next_poll(&a).1 >= Duration::from_secs(5));
}

#[test]
fn a_5xx_or_a_lost_answer_is_polled_again_a_poll_is_a_read() {
    for e in [http(503, None), ambiguous()] {
        let rec = record(Flavor::Runs, RunStatus::Running);
        let a = act(run(&rec, 4, Observation::Answer(Err(e))));
        assert_eq!(a.pause, None);
        assert_eq!(update(&a).retries, Some(1));
        assert_eq!(next_poll(&a).0, 5);
    }
}

#[test]
fn a_refused_poll_dead_letters_the_run() {
    for e in [http(404, None), http(401, None), http(400, None)] {
        let rec = record(Flavor::Runs, RunStatus::Running);
        let a = act(run(&rec, 0, Observation::Answer(Err(e))));
        assert_ends_with_webhook(&a, &rec, RunStatus::Dead);
        assert!(transition(&a).2.starts_with("poll refused"));
    }
}

#[test]
fn the_next_poll_is_never_much_past_the_deadline_nor_under_a_second() {
    let mut rec = record(Flavor::Runs, RunStatus::Running);
    rec.deadline_ms = NOW + 1_500;
    let a = act(run(&rec, 9, Observation::Answer(Err(http(503, Some(60))))));
    assert_eq!(next_poll(&a).1, Duration::from_millis(1_600));
    rec.deadline_ms = NOW + 10;
    let a = act(run(&rec, 0, remote(RemotePhase::Running, "running")));
    assert_eq!(next_poll(&a).1, Duration::from_secs(1));
}

#[test]
fn an_aimed_first_poll_that_finds_the_run_going_on_looks_again_soon() {
    // Runs of this action take about 3 s: the first poll was aimed there,
    // so the run is about to end; the second poll comes a tenth of that
    // later, not the schedule's second or more.
    let rec = RunRecord { expected_ms: Some(3_000), ..record(Flavor::Runs, RunStatus::Running) };
    let a = act(run(&rec, 0, remote(RemotePhase::Running, "running")));
    assert_eq!(next_poll(&a), (1, Duration::from_millis(300)));
    // Never under 250 ms, and only the second poll: later ones keep the
    // schedule's floor of a second (Genesys's request budget per token).
    let quick = RunRecord { expected_ms: Some(1_000), ..record(Flavor::Runs, RunStatus::Running) };
    assert_eq!(next_poll(&act(run(&quick, 0, remote(RemotePhase::Running, "running")))).1, Duration::from_millis(250));
    let later = RunRecord { poll_attempts: 1, ..quick.clone() };
    assert!(next_poll(&act(run(&later, 1, remote(RemotePhase::Running, "running")))).1 >= Duration::from_secs(1));
    // Nothing learnt: the schedule, never under a second.
    let cold = record(Flavor::Runs, RunStatus::Running);
    assert!(next_poll(&act(run(&cold, 0, remote(RemotePhase::Running, "running")))).1 >= Duration::from_secs(1));
}
