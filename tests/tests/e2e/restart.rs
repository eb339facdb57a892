use std::time::Duration;

use gcrun_emulator::{EmulatorConfig, Timings};
use gcrun_harness::wait_until;
use gcrun_model::{RunId, RunStatus};
use gcrun_tests::{LOOKUP, ORDER_FLOW, Stack, signal};
use serde_json::json;

fn slow_emulator() -> EmulatorConfig {
    EmulatorConfig {
        timings: Timings {
            queued_for: Duration::from_millis(500),
            running_for: Duration::from_secs(4),
            execute_for: Duration::from_millis(10),
        },
        ..EmulatorConfig::default()
    }
}

async fn enqueue(stack: &Stack, n: usize) -> Vec<RunId> {
    let docs: Vec<_> = (0..n)
        .map(|i| {
            if i % 2 == 0 {
                json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": format!("c{i}"), "channel": "voice"}})
            } else {
                json!({"flavor": "workflow", "flowId": ORDER_FLOW, "inputs": {"Flow.OrderId": format!("o{i}")}})
            }
        })
        .collect();
    stack.producer.enqueue_batch(&docs).await.unwrap().into_iter().map(|r| r.unwrap().run_id).collect()
}

async fn all_submitted(stack: &Stack, ids: &[RunId]) -> bool {
    for id in ids {
        let status = stack.store.get_run(id).await.unwrap().unwrap().status;
        if !matches!(status, RunStatus::Submitted | RunStatus::Queued | RunStatus::Running) {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn scheduled_polls_wait_in_redis_for_a_worker_started_later() {
    let stack = Stack::start(slow_emulator(), Duration::from_secs(120)).await;
    let ids = enqueue(&stack, 20).await;
    let mut first = stack.spawn_worker_process(&[]);
    wait_until("every run submitted and polling", Duration::from_secs(20), || async {
        all_submitted(&stack, &ids).await.then_some(())
    })
    .await;

    // A graceful stop mid-batch: the process exits by itself, in time.
    signal(&first, "TERM");
    let status = wait_until("the worker to exit after SIGTERM", Duration::from_secs(15), || {
        let s = first.try_wait().unwrap();
        async move { s }
    })
    .await;
    assert!(status.success(), "graceful shutdown exits 0: {status}");

    // No worker now: the backoff lives in Redis as poll jobs, scheduled or
    // held in the stopped worker's in-flight set (fetched, not started),
    // which the next worker's orphan check re-queues.
    let depth = stack.queues.depth(&stack.queues.names.poll).await.unwrap();
    assert_eq!(depth.pending(), ids.len() as u64, "one live poll job per run: {depth:?}");
    assert!(depth.scheduled > 0, "{depth:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await; // some fall due with nobody there
    let open = stack.count(RunStatus::Queued).await
        + stack.count(RunStatus::Running).await
        + stack.count(RunStatus::Submitted).await;
    assert_eq!(open, ids.len() as i64, "nothing moves without a worker");

    // A worker started later picks every one of them up.
    let mut second = stack.spawn_worker_process(&[]);
    stack.wait_all_terminal(&ids, Duration::from_secs(60)).await;
    signal(&second, "TERM");
    let _ = second.wait();
    assert_eq!(stack.count(RunStatus::Completed).await, ids.len() as i64);
    assert_eq!(stack.emu.emulator.stats().submissions, ids.len() as u64, "no run was submitted twice");
}

#[tokio::test]
async fn a_killed_worker_loses_nothing() {
    let stack = Stack::start(slow_emulator(), Duration::from_secs(120)).await;
    let ids = enqueue(&stack, 30).await;
    let mut victim = stack.spawn_worker_process(&[]);
    wait_until("some runs submitted", Duration::from_secs(20), || async {
        (stack.count(RunStatus::Submitted).await
            + stack.count(RunStatus::Queued).await
            + stack.count(RunStatus::Running).await
            >= 10)
            .then_some(())
    })
    .await;
    signal(&victim, "KILL");
    let _ = victim.wait();

    // A crash, not a shutdown: in-flight jobs come back to a survivor once
    // the dead worker's heartbeat is stale.
    let mut survivor = stack.spawn_worker_process(&[]);
    stack.wait_all_terminal(&ids, Duration::from_secs(90)).await;
    signal(&survivor, "TERM");
    let _ = survivor.wait();
    let records = stack.records(&ids).await;
    assert!(
        records.values().all(|r| r.status == RunStatus::Completed),
        "{:?}",
        records.values().map(|r| r.status).collect::<Vec<_>>()
    );
}
