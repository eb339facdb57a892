use std::time::Duration;

use gcrun_emulator::{EmulatorConfig, Faults, Limits, Timings};
use gcrun_model::{RunId, RunStatus};
use gcrun_tests::{CALLBACK, LOOKUP, ORDER_FLOW, Stack, signal};
use serde_json::json;

/// Three worker processes against an emulator that enforces L executions a
/// minute and C at once: the shared limiter keeps every process inside
/// both, so the only 429s are the ones the emulator injects on purpose.
#[tokio::test]
async fn three_workers_share_one_limit() {
    const L: u32 = 60;
    const C: u32 = 4;
    let emulator = EmulatorConfig {
        timings: Timings {
            queued_for: Duration::from_millis(200),
            running_for: Duration::from_millis(800),
            execute_for: Duration::from_millis(300),
        },
        limits: Limits {
            executions_per_window: Some(L),
            window: Duration::from_secs(60),
            max_concurrent: Some(C),
            requests_per_token: None,
        },
        faults: Faults { rate_429: 0.1, retry_after_secs: 1, ..Faults::default() },
        seed: 5,
        ..EmulatorConfig::default()
    };
    let stack = Stack::start(emulator, Duration::from_secs(120)).await;
    let docs: Vec<_> = (0..24)
        .map(|i| match i % 3 {
            0 => json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": format!("c{i}"), "channel": "chat"}}),
            1 => json!({"flavor": "execute", "actionId": CALLBACK, "inputs": {"phoneNumber": "+1 555"}}),
            _ => json!({"flavor": "workflow", "flowId": ORDER_FLOW, "inputs": {}}),
        })
        .collect();
    let ids: Vec<RunId> =
        stack.producer.enqueue_batch(&docs).await.unwrap().into_iter().map(|r| r.unwrap().run_id).collect();
    // Rate: a burst of 4, then one every 1.2 s: at most 4 + 50 in any
    // minute, under L = 60. Concurrency: C.
    let args = ["--rate-per-minute", "50", "--rate-burst", "4", "--max-concurrent", "4"];
    let mut workers: Vec<_> = (0..3).map(|_| stack.spawn_worker_process(&args)).collect();
    stack.wait_all_terminal(&ids, Duration::from_secs(180)).await;
    for w in &workers {
        signal(w, "TERM");
    }
    for w in &mut workers {
        let _ = w.wait();
    }
    let stats = stack.emu.emulator.stats();
    assert!(stats.peak_concurrency <= u64::from(C), "peak {} > {C}", stats.peak_concurrency);
    assert_eq!(stats.limit_429s, 0, "no 429 from the emulator's own limits");
    assert_eq!(stats.too_many_requests, stats.injected.too_many_requests, "429s only where injected");
    assert!(stats.injected.too_many_requests > 0, "the test did inject some 429s");
    assert_eq!(stack.count(RunStatus::Completed).await, ids.len() as i64);
}
