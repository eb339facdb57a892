//! Worker crashes (issue #8, suite 1): runs of all three flavors through
//! three worker processes, SIGKILLed at random moments and replaced, while
//! the emulator injects 429s, 5xx, dropped and truncated answers and
//! transient run errors. Every run ends; no run is submitted twice (per
//! flavor, as the emulator counts them); every webhook verifies and a
//! repeat carries the same event id; no worker panics.
//!
//! `scripts/test`: 600 runs, 6 kills. `GCRUN_SUITES=full`: 2,000 runs, 12
//! kills. `GCRUN_SEED` replays the kill schedule.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use gcrun_emulator::{EmulatorConfig, Faults, Limits, Timings};
use gcrun_model::{RunId, RunStatus, WebhookStatus};
use gcrun_tests::{CALLBACK, LOOKUP, Logged, ORDER_FLOW, Rng, Stack, scaled};
use serde_json::{Value, json};

fn run_doc(i: usize) -> Value {
    match i % 3 {
        0 => {
            json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": format!("c{i}"), "channel": "chat"}})
        }
        1 => json!({"flavor": "execute", "actionId": CALLBACK, "inputs": {"phoneNumber": format!("+1 {i}")}}),
        _ => json!({"flavor": "workflow", "flowId": ORDER_FLOW, "inputs": {"Flow.OrderId": format!("o{i}")}}),
    }
}

fn faulty() -> EmulatorConfig {
    EmulatorConfig {
        timings: Timings {
            queued_for: Duration::from_millis(100),
            running_for: Duration::from_millis(300),
            execute_for: Duration::from_millis(10),
        },
        limits: Limits { executions_per_window: None, max_concurrent: Some(200), ..Limits::default() },
        faults: Faults {
            rate_429: 0.02,
            rate_5xx: 0.02,
            rate_drop: 0.01,
            rate_malformed: 0.01,
            rate_run_error: 0.03,
            ..Faults::default()
        },
        seed: 8,
        ..EmulatorConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_workers_under_faults_lose_nothing_and_submit_nothing_twice() {
    let (runs, kills) = scaled((600, 6), (2_000, 12));
    let mut rng = Rng::from_env("crash suite");
    let stack = Stack::start(faulty(), Duration::from_secs(600)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut spawned = 0;
    let mut spawn = |stack: &Stack| {
        spawned += 1;
        Logged::spawn(stack.worker_process(&[]), dir.path(), &format!("worker-{spawned}"), "warn")
    };
    let mut workers: Vec<Logged> = (0..3).map(|_| spawn(&stack)).collect();

    let started = Instant::now();
    let docs: Vec<Value> = (0..runs).map(run_doc).collect();
    let ids: Vec<RunId> =
        stack.producer.enqueue_batch(&docs).await.unwrap().into_iter().map(|r| r.unwrap().run_id).collect();

    let mut logs = Vec::new();
    let mut open_at_kill = Vec::new();
    for _ in 0..kills {
        tokio::time::sleep(rng.between(Duration::from_millis(300), Duration::from_millis(1_200))).await;
        let victim = (rng.next_u64() % workers.len() as u64) as usize;
        let open = runs as i64 - terminal_count(&stack).await;
        open_at_kill.push(open);
        logs.push(workers.swap_remove(victim).kill());
        workers.push(spawn(&stack));
    }
    stack.wait_all_terminal(&ids, Duration::from_secs(scaled(240, 600))).await;
    let elapsed = started.elapsed();
    for w in &mut workers {
        assert!(w.alive(), "a worker exited on its own: {}", w.text());
    }
    for w in workers {
        let (status, log) = w.stop();
        assert!(status.success(), "graceful stop: {status:?}\n{log}");
        logs.push(log);
    }
    for log in &logs {
        assert!(!log.contains("panicked"), "a worker panicked:\n{log}");
    }
    assert!(open_at_kill.iter().filter(|&&n| n > 0).count() >= kills / 2, "kills hit work in flight: {open_at_kill:?}");

    // Every run ended, each as completed, failed (a run error the emulator
    // made final) or dead-lettered with its reason.
    let records = stack.records(&ids).await;
    assert_eq!(records.len(), runs);
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dead_reasons: BTreeMap<String, usize> = BTreeMap::new();
    for r in records.values() {
        *by_status.entry(r.status.as_str()).or_default() += 1;
        assert!(
            matches!(r.status, RunStatus::Completed | RunStatus::Failed | RunStatus::Dead),
            "{}: {}",
            r.id,
            r.status
        );
        if r.status == RunStatus::Dead {
            let reason = r.last_error.clone().unwrap_or_default();
            assert!(!reason.is_empty(), "{} dead without a reason", r.id);
            *dead_reasons.entry(reason.chars().take(40).collect()).or_default() += 1;
        }
        assert_eq!(r.webhook.status, Some(WebhookStatus::Delivered), "{}", r.id);
    }

    // Never twice at Genesys, for any flavor.
    let stats = stack.emu.emulator.stats();
    assert_eq!(stats.duplicate_submissions, 0, "runs/workflow submitted twice: {:?}", stats.duplicate_run_names);
    assert_eq!(stats.duplicate_executes, 0, "executes sent twice");
    assert!(stats.submissions <= runs as u64, "{} submissions for {runs} runs", stats.submissions);

    // Every webhook verified; one event id per run, however often sent.
    let (bad, accepted, ids_by_run) = {
        let log = stack.sink.lock().unwrap();
        let mut by_run: HashMap<String, HashSet<String>> = HashMap::new();
        for d in &log.accepted {
            by_run.entry(d.body["runId"].as_str().unwrap_or("").to_string()).or_default().insert(d.id.clone());
        }
        (log.bad_signatures, log.accepted.len(), by_run)
    };
    assert_eq!(bad, 0, "every delivery verifies");
    assert_eq!(ids_by_run.len(), runs, "every run's webhook arrived");
    assert!(ids_by_run.values().all(|ids| ids.len() == 1), "a repeat carries the same event id");

    println!(
        "crash suite: {runs} runs, {kills} SIGKILLs (runs open at each: {open_at_kill:?}), all ended in {:.1} s: \
         {by_status:?}; dead: {dead_reasons:?}; {} submissions, 0 duplicates; {accepted} webhooks for {runs} runs \
         ({} repeats, same event id); injected {:?}",
        elapsed.as_secs_f64(),
        stats.submissions,
        accepted - runs,
        stats.injected,
    );
}

async fn terminal_count(stack: &Stack) -> i64 {
    let counts = stack.store.counts().await.unwrap();
    ["completed", "failed", "timed_out", "rejected", "dead"].iter().map(|s| counts.get(*s).copied().unwrap_or(0)).sum()
}
