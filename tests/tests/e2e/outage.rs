//! Redis restart and Redis away (issue #8, suites 2 and 3), with real
//! worker processes and a real `redis-server` on AOF with `appendfsync
//! always`: Redis is SIGKILLed in the middle of a batch and stays away
//! while a plain listener on its port counts every connection the workers
//! try (so a busy reconnect loop would show); no worker exits, `/readyz`
//! goes red while Redis is away and green once it is back, the workers
//! reconnect without a restart, and every run accepted before the crash
//! ends (a submit whose answer could not be written while Redis was away
//! is an unknown outcome: dead-lettered with its reason, never sent
//! twice).
//!
//! `scripts/test`: 300 runs, 8 s away. `GCRUN_SUITES=full`: 2,000, 30 s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gcrun_emulator::{EmulatorConfig, Timings};
use gcrun_harness::{RedisOptions, free_port, wait_until};
use gcrun_model::{RunId, RunStatus};
use gcrun_tests::{LOOKUP, Logged, ORDER_FLOW, Stack, scaled};
use serde_json::json;

async fn enqueue(stack: &Stack, from: usize, n: usize) -> Vec<RunId> {
    let docs: Vec<_> = (from..from + n)
        .map(|i| {
            if i % 2 == 0 {
                json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": format!("o{i}"), "channel": "voice"}})
            } else {
                json!({"flavor": "workflow", "flowId": ORDER_FLOW, "inputs": {"Flow.OrderId": format!("o{i}")}})
            }
        })
        .collect();
    stack.producer.enqueue_batch(&docs).await.unwrap().into_iter().map(|r| r.unwrap().run_id).collect()
}

async fn status(http: &reqwest::Client, port: u16, path: &str) -> Option<u16> {
    http.get(format!("http://127.0.0.1:{port}{path}")).send().await.ok().map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_ride_out_a_redis_crash_and_absence_without_spinning_or_losing_a_run() {
    let (runs, away) = scaled((300, Duration::from_secs(8)), (2_000, Duration::from_secs(30)));
    let emulator = EmulatorConfig {
        timings: Timings {
            queued_for: Duration::from_millis(100),
            running_for: Duration::from_millis(500),
            execute_for: Duration::from_millis(10),
        },
        ..EmulatorConfig::default()
    };
    let options = RedisOptions { appendonly: true, ..RedisOptions::default() };
    let mut stack = Stack::start_with(emulator, Duration::from_secs(600), options).await;
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port()];
    let mut workers: Vec<Logged> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let addr = format!("127.0.0.1:{port}");
            Logged::spawn(stack.worker_process(&["--admin-listen", &addr]), dir.path(), &format!("w{i}"), "warn")
        })
        .collect();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    for port in ports {
        wait_until("the worker ready", Duration::from_secs(20), || async {
            (status(&http, port, "/readyz").await == Some(200)).then_some(())
        })
        .await;
    }

    let mut ids = enqueue(&stack, 0, runs).await;
    wait_until("a quarter of the batch done", Duration::from_secs(120), || async {
        (stack.count(RunStatus::Completed).await >= runs as i64 / 4).then_some(())
    })
    .await;

    // Redis crashes mid-batch; a listener takes its port and counts every
    // connection the workers try while it is away.
    stack.redis.kill();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", stack.redis.port())).await.unwrap();
    let tries = Arc::new(AtomicU64::new(0));
    let counting = {
        let tries = tries.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tries.fetch_add(1, Ordering::Relaxed);
                drop(conn);
            }
        })
    };
    let gone = Instant::now();
    let mut red = [false, false];
    while gone.elapsed() < away {
        for (i, port) in ports.iter().enumerate() {
            assert_eq!(status(&http, *port, "/healthz").await, Some(200), "alive while Redis is away");
            red[i] |= status(&http, *port, "/readyz").await == Some(503);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    counting.abort();
    let _ = counting.await;
    let per_sec = tries.load(Ordering::Relaxed) as f64 / gone.elapsed().as_secs_f64();
    assert_eq!(red, [true, true], "/readyz went red on both workers");
    for w in &mut workers {
        assert!(w.alive(), "a worker exited while Redis was away:\n{}", w.text());
    }
    assert!(per_sec < 20.0, "{per_sec:.1} connection attempts a second while Redis was away");

    // Back, with every write it acknowledged (AOF, fsync always).
    stack.redis.restart();
    let back = Instant::now();
    for port in ports {
        wait_until("the worker ready again", Duration::from_secs(30), || async {
            (status(&http, port, "/readyz").await == Some(200)).then_some(())
        })
        .await;
    }
    let green = back.elapsed();
    wait_until("the stack's own connection back", Duration::from_secs(10), || async { stack.store.ping().await.ok() })
        .await;
    ids.extend(enqueue(&stack, runs, 50).await);
    stack.wait_all_terminal(&ids, Duration::from_secs(scaled(180, 600))).await;
    for w in workers {
        let (exit, log) = w.stop();
        assert!(exit.success() && !log.contains("panicked"), "{exit:?}\n{log}");
    }

    let records = stack.records(&ids).await;
    assert_eq!(records.len(), ids.len(), "every accepted run is still there");
    let unknown = records.values().filter(|r| gcrun_tests::is_unknown_outcome(r)).count();
    let completed = records.values().filter(|r| r.status == RunStatus::Completed).count();
    assert_eq!(completed + unknown, ids.len(), "every run completed or was dead-lettered as an unknown outcome");
    let stats = stack.emu.emulator.stats();
    assert_eq!(stats.duplicate_submissions, 0, "{:?}", stats.duplicate_run_names);
    println!(
        "redis outage: SIGKILLed mid-batch, away {:.0} s: {per_sec:.1} connection attempts/s from 2 workers, \
         /readyz red on both; green {:.1} s after the restart; {} runs: {completed} completed, {unknown} unknown \
         outcomes (calls in flight when Redis died), 0 duplicates, no worker restarted",
        away.as_secs_f64(),
        green.as_secs_f64(),
        ids.len(),
    );
}
