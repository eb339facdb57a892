use std::time::Duration;

use gcrun_emulator::{EmulatorConfig, Timings};
use gcrun_harness::wait_until;
use gcrun_model::RunStatus;
use gcrun_queue::Job;
use gcrun_tests::{LOOKUP, Stack, limiter};
use gcrun_worker::Outcome;
use serde_json::json;

#[tokio::test]
async fn a_redelivered_submit_never_submits_again() {
    let emulator = EmulatorConfig {
        timings: Timings {
            queued_for: Duration::from_millis(100),
            running_for: Duration::from_secs(2),
            execute_for: Duration::ZERO,
        },
        ..EmulatorConfig::default()
    };
    let stack = Stack::start(emulator, Duration::from_secs(60)).await;
    let deps = stack.deps(limiter(60_000, 100, 100)).await;
    let doc = json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": "r", "channel": "chat"}});
    let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;

    // First delivery: validated, submitted, first poll scheduled.
    let step = deps.submit(id, None).await.unwrap();
    assert!(matches!(step, Outcome::Done(ref f) if matches!(f[..], [Job::Poll { attempt: 0, .. }])), "{step:?}");
    let record = stack.store.get_run(&id).await.unwrap().unwrap();
    assert!(matches!(record.status, RunStatus::Submitted | RunStatus::Queued), "{}", record.status);
    assert!(record.remote_id.is_some());
    assert_eq!(stack.emu.emulator.stats().submissions, 1);

    // The same job again (apalis re-delivers after a crash): no second
    // remote run, just the poll chain resumed at its current attempt.
    for _ in 0..3 {
        let again = deps.submit(id, None).await.unwrap();
        let generation = stack.store.get_run(&id).await.unwrap().unwrap().deadline_ms;
        assert_eq!(again, Outcome::Done(vec![Job::Poll { run: id, generation, attempt: 0, after: Duration::ZERO }]));
    }
    let stats = stack.emu.emulator.stats();
    assert_eq!(stats.submissions, 1);
    assert_eq!(stats.duplicate_submissions, 0);

    // Duplicate polls of one attempt: one moves the counter on; the other
    // names the same next step, which is one job in the queue (its job id
    // is deterministic). The steps push what they decide; pushing it once
    // more by hand changes nothing either.
    let a = deps.poll(id, 0, None).await.unwrap();
    let b = deps.poll(id, 0, None).await.unwrap();
    assert_eq!(a, b);
    assert!(matches!(a, Outcome::Done(ref f) if matches!(f[..], [Job::Poll { attempt: 1, .. }])), "{a:?}");
    for step in [a, b] {
        let Outcome::Done(follow) = step else { unreachable!() };
        stack.queues.push(follow[0]).await.unwrap();
    }
    // Poll 0 (pushed by the first submit, then four times more) and poll 1
    // (pushed by both polls and twice by hand): one job each.
    assert_eq!(stack.queues.depth(&stack.queues.names.poll).await.unwrap().pending(), 2);
    assert_eq!(stack.store.get_run(&id).await.unwrap().unwrap().poll_attempts, 1);

    // Through the real queue too: a worker finishes the run, then a
    // re-delivered submit job changes nothing.
    let worker = stack.start_worker(limiter(60_000, 100, 100)).await;
    stack.queues.push_submit(id, Duration::ZERO).await.unwrap();
    stack.wait_all_terminal(&[id], Duration::from_secs(20)).await;
    stack.queues.push_submit(id, Duration::ZERO).await.unwrap();
    wait_until("the re-delivered job to be consumed", Duration::from_secs(10), || async {
        (stack.queues.depth(&stack.queues.names.submit).await.unwrap().pending() == 0).then_some(())
    })
    .await;
    worker.stop().await;
    assert_eq!(stack.emu.emulator.stats().submissions, 1);
    assert_eq!(stack.store.get_run(&id).await.unwrap().unwrap().status, RunStatus::Completed);
}
