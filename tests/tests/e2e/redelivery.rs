use std::time::Duration;

use gcrun_emulator::{EmulatorConfig, Timings};
use gcrun_model::RunStatus;
use gcrun_test_support::wait_until;
use gcrun_tests::{LOOKUP, Stack, limiter};
use gcrun_worker::handlers::{self, FollowUp, Step};
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
    let ctx = stack.ctx(limiter(60_000, 100, 100));
    let doc = json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": "r", "channel": "chat"}});
    let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;

    // First delivery: validated, submitted, first poll scheduled.
    let step = handlers::submit(&ctx, id).await.unwrap();
    assert!(matches!(step, Step::Done(ref f) if matches!(f[..], [FollowUp::Poll { attempt: 0, .. }])), "{step:?}");
    let record = stack.store.get_run(&id).await.unwrap().unwrap();
    assert!(matches!(record.status, RunStatus::Submitted | RunStatus::Queued), "{}", record.status);
    assert!(record.remote_id.is_some());
    assert_eq!(stack.emu.emulator.stats().submissions, 1);

    // The same job again (apalis re-delivers after a crash): no second
    // remote run, just the poll chain resumed at its current attempt.
    for _ in 0..3 {
        let again = handlers::submit(&ctx, id).await.unwrap();
        let generation = stack.store.get_run(&id).await.unwrap().unwrap().deadline_ms;
        assert_eq!(again, Step::Done(vec![FollowUp::Poll { run: id, generation, attempt: 0, after: Duration::ZERO }]));
    }
    let stats = stack.emu.emulator.stats();
    assert_eq!(stats.submissions, 1);
    assert_eq!(stats.duplicate_submissions, 0);

    // Duplicate polls of one attempt: one moves the counter on; the other
    // names the same next step, which is one job in the queue (its job id
    // is deterministic).
    let a = handlers::poll(&ctx, id, 0).await.unwrap();
    let b = handlers::poll(&ctx, id, 0).await.unwrap();
    assert_eq!(a, b);
    assert!(matches!(a, Step::Done(ref f) if matches!(f[..], [FollowUp::Poll { attempt: 1, .. }])), "{a:?}");
    for step in [a, b] {
        let Step::Done(follow) = step else { unreachable!() };
        stack.queues.push(follow[0]).await.unwrap();
    }
    assert_eq!(stack.store.queue_depth(&stack.queues.names.poll).await.unwrap().pending(), 1);
    assert_eq!(stack.store.get_run(&id).await.unwrap().unwrap().poll_attempts, 1);

    // Through the real queue too: a worker finishes the run, then a
    // re-delivered submit job changes nothing.
    let worker = stack.start_worker(limiter(60_000, 100, 100)).await;
    stack.queues.push_submit(id, Duration::ZERO).await.unwrap();
    stack.wait_all_terminal(&[id], Duration::from_secs(20)).await;
    stack.queues.push_submit(id, Duration::ZERO).await.unwrap();
    wait_until("the re-delivered job to be consumed", Duration::from_secs(10), || async {
        (stack.store.queue_depth(&stack.queues.names.submit).await.unwrap().pending() == 0).then_some(())
    })
    .await;
    worker.stop().await;
    assert_eq!(stack.emu.emulator.stats().submissions, 1);
    assert_eq!(stack.store.get_run(&id).await.unwrap().unwrap().status, RunStatus::Completed);
}
