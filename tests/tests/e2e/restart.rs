use std::time::Duration;

use gcrun_emulator::{EmulatorConfig, Timings};
use gcrun_harness::wait_until;
use gcrun_model::{RunId, RunStatus};
use gcrun_tests::{LOOKUP, ORDER_FLOW, Stack, limiter, signal};
use gcrun_worker::RunSettings;
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
    // the dead worker's leases lapse. A run whose Genesys call was in
    // flight when the worker died has an unknown outcome: it is
    // dead-lettered for an operator, never sent twice.
    let mut survivor = stack.spawn_worker_process(&[]);
    stack.wait_all_terminal(&ids, Duration::from_secs(90)).await;
    signal(&survivor, "TERM");
    let _ = survivor.wait();
    let records = stack.records(&ids).await;
    let others: Vec<_> = records
        .values()
        .filter(|r| r.status != RunStatus::Completed && !gcrun_tests::is_unknown_outcome(r))
        .map(|r| r.status)
        .collect();
    assert!(others.is_empty(), "every run completed or was dead-lettered as unknown: {others:?}");
    let stats = stack.emu.emulator.stats();
    assert_eq!(stats.duplicate_submissions, 0, "{:?}", stats.duplicate_run_names);
    assert!(stats.submissions <= ids.len() as u64, "at most one call per run: {}", stats.submissions);
}

#[tokio::test]
async fn a_redis_outage_stalls_nothing_and_the_workers_come_back() {
    let redis_options = gcrun_harness::RedisOptions { appendonly: true, ..gcrun_harness::RedisOptions::default() };
    let mut stack = Stack::start_with(EmulatorConfig::default(), Duration::from_secs(60), redis_options).await;
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", admin.local_addr().unwrap());
    let worker = stack.start_worker_serving(limiter(60_000, 100, 100), RunSettings::default(), Some(admin)).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let before = enqueue(&stack, 1).await;
    stack.wait_all_terminal(&before, Duration::from_secs(20)).await;

    stack.redis.kill();
    // While Redis is down the workers fail and are restarted again and
    // again; the admin server answers all the while, at once.
    let outage = std::time::Instant::now();
    while outage.elapsed() < Duration::from_secs(3) {
        let asked = std::time::Instant::now();
        let live = http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(live.status(), 200);
        // Within a Kubernetes probe's default timeout (1 s).
        assert!(asked.elapsed() < Duration::from_secs(1), "healthz took {:?}", asked.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "not ready without Redis");

    stack.redis.restart();
    // The test's own connection reconnects on first use, as any client's.
    wait_until("the stack's connection to Redis to come back", Duration::from_secs(10), || async {
        stack.store.ping().await.ok()
    })
    .await;
    let after = enqueue(&stack, 3).await;
    stack.wait_all_terminal(&after, Duration::from_secs(30)).await;
    assert_eq!(http.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);
    worker.stop().await;
    for id in before.iter().chain(&after) {
        assert_eq!(stack.store.get_run(id).await.unwrap().unwrap().status, RunStatus::Completed);
    }
}
