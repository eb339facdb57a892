//! Pause under load (issue #8, suite 5): a 429 with a long Retry-After
//! pauses every worker of the client while thousands of runs wait. The
//! waiting runs are parked in the queue's schedule, not re-tried: Redis
//! commands per second during the pause stay near the idle cost. Once the
//! pause ends, submissions start again at once and the org's concurrency
//! limit is used again.
//!
//! `scripts/test`: 2,000 runs, a 10 s pause. `GCRUN_SUITES=full`: 10,000
//! runs, 60 s.

use std::time::Duration;

use gcrun_emulator::{EmulatorConfig, Faults, Limits, Timings};
use gcrun_harness::wait_until;
use gcrun_model::{RunId, RunStatus};
use gcrun_tests::{CLIENT_ID, ORDER_FLOW, Stack, limiter, scaled};
use gcrun_worker::RunSettings;
use serde_json::json;

async fn commands_processed(stack: &Stack) -> u64 {
    gcrun_tests::info_sum(stack, "stats", "total_commands_processed").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_pause_with_thousands_waiting_costs_no_busy_loop_and_ends_at_once() {
    let (runs, pause_secs) = scaled((2_000usize, 10u64), (10_000, 60));
    let emulator = EmulatorConfig {
        timings: Timings {
            queued_for: Duration::from_millis(50),
            running_for: Duration::from_millis(300),
            execute_for: Duration::from_millis(10),
        },
        limits: Limits { executions_per_window: None, max_concurrent: Some(50), ..Limits::default() },
        // Exactly one 429, with the long Retry-After: the first call.
        faults: Faults { rate_429: 1.0, retry_after_secs: pause_secs, budget: Some(1), ..Faults::default() },
        ..EmulatorConfig::default()
    };
    let stack = Stack::start(emulator, Duration::from_secs(pause_secs + 600)).await;
    let worker = stack.start_worker_with(limiter(60_000, 100, 50), RunSettings::default()).await;
    let doc =
        |i: usize| json!({"flavor": "workflow", "flowId": ORDER_FLOW, "inputs": {"Flow.OrderId": format!("p{i}")}});

    // The first run's call is answered 429 with the long Retry-After: the
    // client's shared limiter is paused for every worker.
    let first = stack.producer.enqueue_value(&doc(0)).await.unwrap().run_id;
    let pause_key = stack.store.keys().limiter(CLIENT_ID)[2].clone();
    let pause_end: u64 = wait_until("the client to be paused", Duration::from_secs(10), || async {
        redis::cmd("GET").arg(&pause_key).query_async::<Option<u64>>(&mut stack.store.connection()).await.unwrap()
    })
    .await;

    let docs: Vec<_> = (1..=runs).map(doc).collect();
    let mut ids: Vec<RunId> =
        stack.producer.enqueue_batch(&docs).await.unwrap().into_iter().map(|r| r.unwrap().run_id).collect();
    ids.push(first);
    // Every run reaches the limiter, is told to wait, and is parked.
    let parked = Duration::from_millis(pause_end.saturating_sub(stack.store.redis_now_ms().await.unwrap()));
    wait_until("every run parked for the pause", parked, || async {
        let depth = stack.queues.depth(&stack.queues.names.submit).await.unwrap();
        (stack.count(RunStatus::Validated).await == ids.len() as i64 && depth.ready == 0 && depth.in_flight == 0)
            .then_some(())
    })
    .await;
    let left = pause_end.saturating_sub(stack.store.redis_now_ms().await.unwrap());
    assert!(left > 1_500, "parking {} runs took most of the pause", ids.len());
    let window = Duration::from_millis((left - 1_000).min(5_000));
    let before = commands_processed(&stack).await;
    tokio::time::sleep(window).await;
    let per_sec = (commands_processed(&stack).await - before) as f64 / window.as_secs_f64();
    assert_eq!(stack.emu.emulator.stats().submissions, 0, "nothing submitted during the pause");
    assert!(per_sec < 100.0, "{per_sec:.0} Redis commands/s while {} runs wait out the pause", ids.len());

    // The pause ends (by Redis's clock): submissions start again at once.
    let rest = Duration::from_millis(pause_end.saturating_sub(stack.store.redis_now_ms().await.unwrap()) + 1_000);
    wait_until("the pause to end", rest, || async {
        (stack.store.redis_now_ms().await.unwrap() >= pause_end).then_some(())
    })
    .await;
    let ending = std::time::Instant::now();
    while stack.emu.emulator.stats().submissions == 0 {
        if ending.elapsed() > Duration::from_secs(10) {
            let depth = stack.queues.depth(&stack.queues.names.submit).await.unwrap();
            let pause: Option<u64> =
                redis::cmd("GET").arg(&pause_key).query_async(&mut stack.store.connection()).await.unwrap();
            let now = stack.store.redis_now_ms().await.unwrap();
            panic!(
                "no submission {} ms after the pause ended (pause key {pause:?}, now {now}); submit queue {depth:?}; \
                 counts {:?}; emulator {:?}",
                now.saturating_sub(pause_end),
                stack.store.counts().await.unwrap(),
                stack.emu.emulator.stats().requests
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let late = stack.store.redis_now_ms().await.unwrap().saturating_sub(pause_end);
    assert!(late < 1_500, "the first submission came {late} ms after the pause ended");
    wait_until("the org's concurrency limit in use again", Duration::from_secs(10), || async {
        (stack.emu.emulator.stats().peak_concurrency >= 45).then_some(())
    })
    .await;
    let full_after = stack.store.redis_now_ms().await.unwrap().saturating_sub(pause_end);
    stack.wait_all_terminal(&ids, Duration::from_secs(scaled(300, 900))).await;
    worker.stop().await;
    let records = stack.records(&ids).await;
    assert!(records.values().all(|r| r.status == RunStatus::Completed), "every run completed after the pause");
    println!(
        "pause under load: {} runs waited out a {pause_secs} s Retry-After at {per_sec:.1} Redis commands/s; \
         first submission {late} ms after the pause ended, 45 of 50 slots busy {full_after} ms after",
        ids.len()
    );
}
