//! A backlog built while no worker runs drains once workers start: the
//! scaled-down form of `gcrun bench queue --scenarios drain` (100,000 runs
//! by default, with its timing printed). apalis-redis wedged such a queue
//! for good past about 8,000 due jobs; the engine promotes and leases in
//! bounded slices, so no backlog size can stop it.

use std::time::Duration;

use gcrun_emulator::EmulatorConfig;
use gcrun_model::{RunId, RunStatus, WebhookStatus};
use gcrun_tests::{LOOKUP, Stack, limiter};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_enqueued_while_no_worker_runs_drains_with_two_workers() {
    let emulator = EmulatorConfig::zero_latency();
    let stack = Stack::start(emulator, Duration::from_secs(900)).await;
    let n = 3_000;
    let mut ids: Vec<RunId> = Vec::with_capacity(n);
    for start in (0..n).step_by(1_000) {
        let docs: Vec<_> = (start..start + 1_000)
            .map(|i| json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": format!("c{i}"), "channel": "chat"}}))
            .collect();
        ids.extend(stack.producer.enqueue_batch(&docs).await.unwrap().iter().map(|r| r.as_ref().unwrap().run_id));
    }
    let backlog = stack.queues.depth(&stack.queues.names.submit).await.unwrap();
    assert_eq!((backlog.ready, backlog.in_flight), (n as u64, 0), "nothing ran before the workers");
    assert!(backlog.oldest_ready_ms.is_some());

    let limits = limiter(1_000_000, 100_000, 100_000);
    let (a, b) = (stack.start_worker(limits.clone()).await, stack.start_worker(limits).await);
    stack.wait_all_terminal(&ids, Duration::from_secs(600)).await;
    a.stop().await;
    b.stop().await;

    let records = stack.records(&ids).await;
    assert_eq!(records.len(), n);
    let not_done: Vec<_> = records.values().filter(|r| r.status != RunStatus::Completed).take(3).collect();
    assert!(not_done.is_empty(), "every run completed: {not_done:?}");
    assert!(records.values().all(|r| r.webhook.status == Some(WebhookStatus::Delivered)), "every webhook delivered");
    assert_eq!(stack.emu.emulator.stats().duplicate_submissions, 0);
}
