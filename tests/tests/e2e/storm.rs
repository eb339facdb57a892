//! Fault storm (issue #8, suite 4): about 30 % of the emulator's answers
//! are faults (429s with Retry-After, 5xx, dropped and truncated answers,
//! transient run errors, and the token endpoint too). Every run ends, no
//! worker panics or exits, no run is sent twice, and the requests each run
//! costs stay within the documented maximum: one submit plus one per retry
//! (`GCRUN_MAX_SUBMIT_ATTEMPTS`, 20 by default), one per poll (at most
//! 1,000, the worker's `max_poll_attempts`) and the poll that sees the end. Every request the emulator saw on
//! a run endpoint is one the run's record counted, so gcrun makes no
//! request it does not account for.
//!
//! `scripts/test`: 400 runs. `GCRUN_SUITES=full`: 2,000.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use gcrun_emulator::{EmulatorConfig, Faults, Limits, Timings};
use gcrun_model::{RunId, RunStatus};
use gcrun_tests::{CALLBACK, LOOKUP, Logged, ORDER_FLOW, Stack, scaled};
use gcrun_worker::WorkerConfig;
use serde_json::{Value, json};

/// The run endpoints: submits and polls of every flavor (not the token or
/// the action definition, which are cached per worker, not per run).
const RUN_ENDPOINTS: [&str; 5] = [
    "POST /api/v2/integrations/actions/{actionId}/execute",
    "POST /api/v2/actions/runs",
    "GET /api/v2/actions/runs/{runId}",
    "POST /api/v2/flows/executions",
    "GET /api/v2/flows/executions/{flowExecutionId}",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_fault_storm_every_run_ends_within_its_request_budget() {
    let runs = scaled(400, 2_000);
    let emulator = EmulatorConfig {
        timings: Timings {
            queued_for: Duration::from_millis(100),
            running_for: Duration::from_millis(200),
            execute_for: Duration::from_millis(10),
        },
        limits: Limits { executions_per_window: None, max_concurrent: Some(200), ..Limits::default() },
        faults: Faults {
            rate_429: 0.06,
            retry_after_secs: 1,
            rate_5xx: 0.18,
            rate_drop: 0.04,
            rate_malformed: 0.04,
            rate_run_error: 0.1,
            oauth: true,
            ..Faults::default()
        },
        seed: 30,
        ..EmulatorConfig::default()
    };
    let stack = Stack::start(emulator, Duration::from_secs(600)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut worker = Logged::spawn(stack.worker_process(&[]), dir.path(), "worker", "warn");

    let started = Instant::now();
    let docs: Vec<Value> = (0..runs)
        .map(|i| match i % 3 {
            0 => json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": format!("s{i}"), "channel": "chat"}}),
            1 => json!({"flavor": "execute", "actionId": CALLBACK, "inputs": {"phoneNumber": format!("+2 {i}")}}),
            _ => json!({"flavor": "workflow", "flowId": ORDER_FLOW, "inputs": {"Flow.OrderId": format!("s{i}")}}),
        })
        .collect();
    let ids: Vec<RunId> =
        stack.producer.enqueue_batch(&docs).await.unwrap().into_iter().map(|r| r.unwrap().run_id).collect();
    stack.wait_all_terminal(&ids, Duration::from_secs(scaled(240, 600))).await;
    let elapsed = started.elapsed();
    assert!(worker.alive(), "the worker exited: {}", worker.text());
    let (status, log) = worker.stop();
    assert!(status.success() && !log.contains("panicked"), "{status:?}\n{log}");

    let records = stack.records(&ids).await;
    let policy = WorkerConfig::default();
    let bound = u64::from(policy.max_submit_attempts + policy.max_poll_attempts) + 1;
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut counted, mut most) = (0u64, 0u64);
    for r in records.values() {
        let ends = [RunStatus::Completed, RunStatus::Failed, RunStatus::Dead];
        assert!(ends.contains(&r.status), "{}: {} ({:?})", r.id, r.status, r.last_error);
        assert!(r.status != RunStatus::Dead || r.last_error.is_some(), "{} dead without a reason", r.id);
        *by_status.entry(r.status.as_str()).or_default() += 1;
        // One submit, one per retry (of the submit or of a poll), one per
        // poll that kept the run going and the one that saw it end: an
        // upper bound on the run's requests.
        let polled_to_end = u64::from(!r.flavor.is_synchronous() && r.remote_id.is_some());
        let requests = 1 + u64::from(r.retries) + u64::from(r.poll_attempts) + polled_to_end;
        counted += requests;
        most = most.max(requests);
    }
    let stats = stack.emu.emulator.stats();
    let seen: u64 = RUN_ENDPOINTS.iter().filter_map(|e| stats.requests.get(*e)).flat_map(|by| by.values()).sum();
    assert!(most <= bound, "a run made {most} requests; the documented maximum is {bound}");
    assert!(seen <= counted, "the emulator saw {seen} run requests, the records account for {counted}");
    assert_eq!((stats.duplicate_submissions, stats.duplicate_executes), (0, 0), "nothing sent twice");
    let faults = stats.injected.too_many_requests
        + stats.injected.server_errors
        + stats.injected.dropped
        + stats.injected.malformed
        + stats.injected.run_errors;
    let all: u64 = stats.requests.values().flat_map(|by| by.values()).sum();
    println!(
        "fault storm: {runs} runs ended in {:.1} s: {by_status:?}; {faults} faults in {all} requests ({:.0} %): {:?}; \
         run requests {seen} ({:.2} a run), at most {most} for one run (documented maximum {bound})",
        elapsed.as_secs_f64(),
        100.0 * faults as f64 / all.max(1) as f64,
        stats.injected,
        seen as f64 / runs as f64,
    );
    assert!(faults * 100 >= all * 25, "the storm injected {faults} faults in {all} requests");
}
