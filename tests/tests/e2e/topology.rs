//! The pipeline on the Redis topologies a deployment uses for high
//! availability and scale-out: a three-primary Cluster, and a primary with
//! a replica under three sentinels, failed over in the middle of a batch.
//! Real servers, real sentinels, a real `gcrun worker` process.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use gcrun_emulator::{EmulatorConfig, Limits, Timings};
use gcrun_harness::{RedisCluster, RedisSentinels};
use gcrun_model::{RunId, RunStatus};
use gcrun_tests::{CALLBACK, LOOKUP, ORDER_FLOW, Redis, Stack, scaled};
use serde_json::{Value, json};

fn emulator() -> EmulatorConfig {
    EmulatorConfig {
        timings: Timings {
            queued_for: Duration::from_millis(50),
            running_for: Duration::from_millis(200),
            execute_for: Duration::from_millis(10),
        },
        limits: Limits { executions_per_window: None, max_concurrent: Some(200), ..Limits::default() },
        seed: 5,
        ..EmulatorConfig::default()
    }
}

/// `n` valid runs over the three flavors.
fn batch(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| match i % 3 {
            0 => json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": format!("c{i}"), "channel": "chat"}}),
            1 => json!({"flavor": "execute", "actionId": CALLBACK, "inputs": {"phoneNumber": format!("+1 {i}")}}),
            _ => json!({"flavor": "workflow", "flowId": ORDER_FLOW, "inputs": {"Flow.OrderId": format!("o{i}")}}),
        })
        .collect()
}

/// A worker process, killed when the test ends however it ends.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Statuses of `ids`, tolerating Redis errors (a failover in progress):
/// `None` when the store could not answer this time.
async fn statuses(stack: &Stack, ids: &[RunId]) -> Option<HashMap<RunId, Option<RunStatus>>> {
    let mut out = HashMap::new();
    for id in ids {
        let status = stack.store.get_run(id).await.ok()?.map(|r| r.status);
        out.insert(*id, status);
    }
    Some(out)
}

async fn wait_terminal(stack: &Stack, ids: &[RunId], timeout: Duration) -> HashMap<RunId, Option<RunStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = statuses(stack, ids).await
            && s.values().all(|st| st.is_some_and(|st| st.is_terminal()))
        {
            return s;
        }
        if Instant::now() > deadline {
            let s = statuses(stack, ids).await.unwrap_or_default();
            let open: Vec<_> = s.iter().filter(|(_, st)| !st.is_some_and(|st| st.is_terminal())).take(5).collect();
            panic!("runs still open after {timeout:?}, for example {open:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_runs_on_a_three_primary_redis_cluster() {
    let cluster = RedisCluster::start(3);
    let stack = Stack::start_on(emulator(), Duration::from_secs(120), Redis::Cluster(cluster)).await;
    let _worker = Reaped(stack.spawn_worker_process(&[]));

    let n = scaled(300, 3_000);
    let results = stack.producer.enqueue_batch(&batch(n)).await.unwrap();
    let ids: Vec<RunId> = results.iter().map(|r| r.as_ref().unwrap().run_id).collect();
    let ended = wait_terminal(&stack, &ids, Duration::from_secs(180)).await;
    let completed = ended.values().filter(|s| **s == Some(RunStatus::Completed)).count();
    assert_eq!(completed, n, "every run completes on the cluster");
    gcrun_harness::wait_until("a webhook for every run", Duration::from_secs(30), || async {
        (stack.sink.lock().unwrap().unique_events() >= n).then_some(())
    })
    .await;
    {
        let sink = stack.sink.lock().unwrap();
        assert_eq!(sink.bad_signatures, 0);
        let hooked: HashSet<&str> = sink.accepted.iter().filter_map(|d| d.body["runId"].as_str()).collect();
        assert_eq!(hooked.len(), n, "one run id per webhook event");
    }

    // The operators' reads work there too (they page by key, never SCAN).
    let page = stack.store.runs_page(&Default::default(), &Default::default()).await.unwrap();
    assert!(!page.runs.is_empty());
    assert_eq!(stack.store.counts().await.unwrap().get("completed").copied().unwrap_or(0), n as i64);

    // One tenant's keys share one hash tag, so they sit on one shard.
    let Redis::Cluster(cluster) = &stack.redis else { unreachable!() };
    let per_node = cluster.keys_per_node();
    assert_eq!(per_node.iter().filter(|k| **k > 0).count(), 1, "all of gcrun's keys on one node: {per_node:?}");
    println!("cluster: {n} runs completed; keys per node {per_node:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_in_the_middle_of_a_batch_loses_no_run() {
    let sentinels = RedisSentinels::start();
    // The stack's producer and store reach Redis through the sentinels too.
    let mut stack = Stack::start_on(emulator(), Duration::from_secs(120), Redis::Sentinel(sentinels)).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("worker.log");
    let mut cmd = stack.worker_process(&[]);
    cmd.env("GCRUN_LOG", "info").stderr(std::fs::File::create(&log).unwrap());
    let _worker = Reaped(cmd.spawn().unwrap());

    let n = scaled(600, 6_000);
    let results = stack.producer.enqueue_batch(&batch(n)).await.unwrap();
    let ids: Vec<RunId> = results.iter().map(|r| r.as_ref().unwrap().run_id).collect();

    // Kill the primary once the batch is well under way.
    let open_at_kill = gcrun_harness::wait_until("a sixth of the batch to end", Duration::from_secs(120), || async {
        let s = statuses(&stack, &ids).await?;
        let ended = s.values().filter(|st| st.is_some_and(|st| st.is_terminal())).count();
        (ended >= n / 6).then_some(n - ended)
    })
    .await;
    let Redis::Sentinel(sentinels) = &mut stack.redis else { unreachable!() };
    let killed_at = Instant::now();
    let old = sentinels.kill_primary();
    let new = sentinels.wait_for_failover(old, Duration::from_secs(60)).unwrap();
    let failover = killed_at.elapsed();

    let ended = wait_terminal(&stack, &ids, Duration::from_secs(240)).await;
    let recovered = killed_at.elapsed();
    let mut by_status: HashMap<RunStatus, usize> = HashMap::new();
    for st in ended.values().flatten() {
        *by_status.entry(*st).or_default() += 1;
    }
    // Every accepted run is still there and ended: none lost with the old
    // primary. The only runs that may not complete are those whose call
    // Genesys may have taken while the outcome was lost (unknown outcome,
    // dead-lettered with that reason, never sent twice).
    assert_eq!(ended.len(), n);
    let completed = by_status.get(&RunStatus::Completed).copied().unwrap_or(0);
    let dead = by_status.get(&RunStatus::Dead).copied().unwrap_or(0);
    let records = stack.records(&ids).await;
    let reasons: Vec<String> =
        records.values().filter(|r| r.status == RunStatus::Dead).map(|r| format!("{:?}", r.error)).collect();
    assert_eq!(completed + dead, n, "{by_status:?} {reasons:?}");
    assert!(dead <= open_at_kill, "{dead} dead, more than the {open_at_kill} runs open at the failover");
    gcrun_harness::wait_until("a webhook for every run", Duration::from_secs(60), || async {
        (stack.sink.lock().unwrap().unique_events() >= n).then_some(())
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("asking the sentinels again"), "the worker saw the primary go");
    assert!(!text.contains("panicked"), "{text}");
    println!(
        "sentinel: {n} runs, primary {old} killed with {open_at_kill} open; sentinels named {new} after {:.1} s; \
         all ended {:.1} s after the kill: {by_status:?} {reasons:?}",
        failover.as_secs_f64(),
        recovered.as_secs_f64()
    );
}
