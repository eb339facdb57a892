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

/// Runs denied a concurrency slot wait on a list that each released slot
/// wakes, instead of coming back every second: the submit jobs stay near
/// one or two a run, and the slots never sit idle while runs wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_waiting_for_a_slot_are_woken_by_releases_not_timers() {
    let emulator = EmulatorConfig {
        timings: Timings {
            queued_for: Duration::ZERO,
            running_for: Duration::from_millis(100),
            execute_for: Duration::from_millis(10),
        },
        ..EmulatorConfig::default()
    };
    let stack = Stack::start(emulator, Duration::from_secs(120)).await;
    let fast = gcrun_worker::RunSettings { poll_interval: Duration::from_millis(20), ..Default::default() };
    let mut settings = stack.worker_settings(gcrun_tests::limiter(60_000, 100, 3), fast);
    // A safety net longer than the whole batch takes: a run that waited for
    // it instead of being woken would show in the time.
    settings.policy.slot_wait = Duration::from_secs(20);
    let docs: Vec<_> = (0..30)
        .map(|i| json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": format!("w{i}"), "channel": "chat"}}))
        .collect();
    let ids: Vec<RunId> =
        stack.producer.enqueue_batch(&docs).await.unwrap().into_iter().map(|r| r.unwrap().run_id).collect();
    let started = std::time::Instant::now();
    let worker = stack.start_worker_from(settings).await;
    // Ten waves of three short runs: woken by releases, a few seconds.
    let (took, jobs_by_then) = gcrun_harness::wait_until("every run ended", Duration::from_secs(60), || async {
        let records = stack.records(&ids).await;
        if !records.values().all(|r| r.status.is_terminal()) {
            return None;
        }
        let done = stack.queues.depth(&stack.queues.names.submit).await.unwrap().done;
        Some((started.elapsed(), done))
    })
    .await;
    // The safety nets of runs that were woken fire later and find them done.
    stack.wait_all_terminal(&ids, Duration::from_secs(40)).await;
    worker.stop().await;
    let records = stack.records(&ids).await;
    assert!(records.values().all(|r| r.status == RunStatus::Completed));
    let submit_jobs = stack.queues.depth(&stack.queues.names.submit).await.unwrap().done;
    eprintln!(
        "30 runs through 3 slots in {took:?}; {jobs_by_then} submit jobs by then, {submit_jobs} once the safety nets fired"
    );
    // At most a first try and a wake-up a run by the time they all ended
    // (a re-push every second, as before, made several a run).
    assert!(jobs_by_then <= 2 * ids.len() as u64 + 5, "{jobs_by_then} submit jobs for {} runs", ids.len());
    assert!(submit_jobs <= 3 * ids.len() as u64, "{submit_jobs} submit jobs for {} runs", ids.len());
    assert!(took < Duration::from_secs(19), "no run waited for its 20 s safety net: {took:?}");
    assert!(stack.emu.emulator.stats().peak_concurrency <= 3);
}
