//! Soak (issue #8, suite 8): a long stream of runs through two worker
//! processes with their memory sampled. Worker RSS stays flat after
//! warm-up; with retention set short, every record, index entry, count,
//! finished-job marker and audit entry past the cap goes, and Redis's
//! memory comes back within 2 MB of its baseline (what stays is Redis's
//! own: scripts, buffers, the capped audit stream), from a peak that
//! grows with the runs.
//!
//! `scripts/test`: 3,000 runs. `GCRUN_SUITES=full`: 20,000.

use std::time::{Duration, Instant};

use gcrun_emulator::{EmulatorConfig, Timings};
use gcrun_harness::{free_port, wait_until};
use gcrun_model::RunId;
use gcrun_tests::{CALLBACK, LOOKUP, Logged, ORDER_FLOW, Stack, scaled};
use serde_json::json;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn used_memory(stack: &Stack) -> u64 {
    gcrun_tests::info_sum(stack, "memory", "used_memory").await
}

async fn run_keys(stack: &Stack) -> u64 {
    let keys: Vec<String> =
        redis::cmd("KEYS").arg("{gcrun}:run:*").query_async(&mut stack.store.connection()).await.unwrap();
    keys.len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_stream_leaves_flat_worker_memory_and_redis_back_at_its_baseline() {
    let runs = scaled(3_000, 20_000);
    let emulator = EmulatorConfig {
        timings: Timings {
            queued_for: Duration::from_millis(50),
            running_for: Duration::from_millis(200),
            execute_for: Duration::from_millis(5),
        },
        ..EmulatorConfig::default()
    };
    let stack = Stack::start(emulator, Duration::from_secs(900)).await;
    let dir = tempfile::tempdir().unwrap();
    // Short retention everywhere (the done markers' floor is a lease plus
    // the sweeper's grace: 63 s at the suite's 3 s lease).
    let retention = [
        "--run-retention-secs",
        "10",
        "--dead-run-retention-secs",
        "10",
        "--audit-cap",
        "500",
        "--done-retention-secs",
        "63",
        "--dead-job-retention-secs",
        "63",
    ];
    let ports = [free_port(), free_port()];
    let workers: Vec<Logged> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let addr = format!("127.0.0.1:{port}");
            let args: Vec<&str> = retention.iter().copied().chain(["--admin-listen", addr.as_str()]).collect();
            Logged::spawn(stack.worker_process(&args), dir.path(), &format!("w{i}"), "warn")
        })
        .collect();
    let pids: Vec<u32> = workers.iter().map(|w| w.child.id()).collect();
    wait_until("the workers up", Duration::from_secs(20), || async {
        pids.iter().all(|p| rss_kb(*p) > 0).then_some(())
    })
    .await;
    let baseline = used_memory(&stack).await;

    // The stream: batches of 500 as the previous ones drain, sampling the
    // workers' memory as it goes.
    let started = Instant::now();
    let mut ids: Vec<RunId> = Vec::new();
    let samples = std::sync::Mutex::new(Vec::<(usize, u64)>::new()); // (runs ended, total worker RSS kB)
    let mut peak_redis = 0;
    while ids.len() < runs {
        let from = ids.len();
        let docs: Vec<_> = (from..(from + 500).min(runs))
            .map(|i| match i % 3 {
                0 => json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": format!("k{i}"), "channel": "chat"}}),
                1 => json!({"flavor": "execute", "actionId": CALLBACK, "inputs": {"phoneNumber": format!("+3 {i}")}}),
                _ => json!({"flavor": "workflow", "flowId": ORDER_FLOW, "inputs": {"Flow.OrderId": format!("k{i}")}}),
            })
            .collect();
        ids.extend(stack.producer.enqueue_batch(&docs).await.unwrap().into_iter().map(|r| r.unwrap().run_id));
        let ended_target = ids.len().saturating_sub(500) as i64;
        wait_until("the stream to drain below 500 open runs", Duration::from_secs(120), || async {
            let ended = ended(&stack).await;
            samples.lock().unwrap().push((ended as usize, pids.iter().map(|p| rss_kb(*p)).sum()));
            (ended >= ended_target).then_some(())
        })
        .await;
        peak_redis = peak_redis.max(used_memory(&stack).await);
    }
    // Every run ended (its webhook arrived; retention may already have
    // taken its record) and no job is left.
    wait_until("every run's webhook and no job left", Duration::from_secs(300), || async {
        let mut pending = 0;
        for q in stack.queues.names.all() {
            pending += stack.queues.depth(q).await.unwrap().pending();
        }
        (ended(&stack).await == runs as i64 && pending == 0).then_some(())
    })
    .await;
    let drained = started.elapsed();
    let mut samples = samples.into_inner().unwrap();
    // Limiter waits a run, from the workers' metrics: a run told to wait
    // for the rate comes back once, at a moment of its own.
    let http = reqwest::Client::new();
    let mut waits = std::collections::BTreeMap::<String, f64>::new();
    for port in ports {
        let text = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap().text().await.unwrap();
        for line in text.lines().filter(|l| l.starts_with("gcrun_limiter_waits_total{")) {
            let (labels, n) = line.rsplit_once(' ').unwrap();
            *waits.entry(labels.to_string()).or_default() += n.parse::<f64>().unwrap() / runs as f64;
        }
    }
    let per_run: f64 = waits.values().sum();
    assert!(per_run < 3.0, "limiter waits a run: {waits:?}");
    samples.push((runs, pids.iter().map(|p| rss_kb(*p)).sum()));

    // Flat after warm-up: from a fifth of the stream on, worker memory
    // grows by no more than a quarter plus 8 MB however long it runs.
    let warm = samples.iter().find(|(ended, _)| *ended >= runs / 5).map(|s| s.1).unwrap();
    let later_max = samples.iter().filter(|(ended, _)| *ended >= runs / 5).map(|s| s.1).max().unwrap();
    assert!(later_max <= warm + warm / 4 + 8_192, "worker RSS went from {warm} kB warm to {later_max} kB");

    // Retention passes: nothing of the runs is left (records, counts, the
    // open, expiring and dead-letter indexes, finished-job markers), and the
    // memory is back.
    let settled = Instant::now();
    let left = loop {
        let mem = used_memory(&stack).await;
        // `total` counts every run ever accepted; the rest, runs now.
        let counts_left: i64 =
            stack.store.counts().await.unwrap().iter().filter(|(k, _)| k.as_str() != "total").map(|(_, n)| n).sum();
        let mut done = 0;
        for q in stack.queues.names.all() {
            done += stack.queues.depth(q).await.unwrap().done;
        }
        let mut indexed = 0;
        for key in [
            stack.store.keys().open(),
            stack.store.keys().expiring(),
            stack.store.keys().dlq(),
            stack.store.keys().webhook_dlq(),
        ] {
            indexed += zcard(&stack, key).await;
        }
        let records = run_keys(&stack).await;
        // What stays is Redis's own: the script cache, connection buffers,
        // the audit stream's cap; none of it grows with the runs.
        if records == 0 && counts_left == 0 && indexed == 0 && done == 0 && mem <= baseline + 2 * 1024 * 1024 {
            break mem;
        }
        assert!(
            settled.elapsed() < Duration::from_secs(200),
            "after {:?}: {records} run keys, counts {counts_left}, {indexed} index entries, {done} done markers, \
             {mem} B of Redis memory (baseline {baseline} B)",
            settled.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for w in workers {
        let (exit, log) = w.stop();
        assert!(exit.success() && !log.contains("panicked"), "{exit:?}\n{log}");
    }
    println!(
        "soak: {runs} runs through 2 workers in {:.1} s ({:.0} runs/s); worker RSS (both) {warm} kB \
         warm, at most {later_max} kB after; Redis {baseline} B at start, peak {peak_redis} B, {left} B {:.0} s after \
         the drain (retention 10 s records, 63 s done markers, audit cap 500); limiter waits a run {waits:.2?}",
        drained.as_secs_f64(),
        runs as f64 / drained.as_secs_f64(),
        settled.elapsed().as_secs_f64() + 0.0,
    );
}

/// Runs whose webhook arrived (every run here has one): ended runs, however
/// many retention has already taken.
async fn ended(stack: &Stack) -> i64 {
    stack.sink.lock().unwrap().unique_events() as i64
}

async fn zcard(stack: &Stack, key: String) -> u64 {
    redis::cmd("ZCARD").arg(key).query_async(&mut stack.store.connection()).await.unwrap()
}
