//! `gcrun bench`: figures anyone can reproduce on their own machine, printed
//! as one JSON line per scenario (and nothing asserted: the tests hold the
//! behaviour, this prints the numbers). Everything runs on a private
//! `redis-server` and, for whole runs, the emulator with zero latency.
//!
//! `gcrun bench queue` measures the queue engine under the apalis runtime:
//! - `idle`: enqueue → fetched at idle (the push comes from another
//!   connection, so only the pub/sub announcement can wake the worker), and
//!   what an idle worker costs Redis per second;
//! - `lateness`: how late a scheduled job starts at idle, and whether any
//!   starts early;
//! - `commands`: Redis commands per job on the hot path, from `INFO
//!   commandstats` (commands inside scripts included), with a breakdown;
//! - `memory`: Redis memory before, at the peak and after retention of
//!   50,000 jobs;
//! - `drain`: N runs (default 100,000) enqueued while no worker runs, then
//!   two workers start: the time until every run has ended and every
//!   webhook is delivered, runs/s, commands per run (the enqueue's own
//!   commands counted apart);
//! - `slots` (not in the default set): runs of 1.5 s through a limit of
//!   40 at once, with the fixed poll schedule and with first polls aimed
//!   at what the action's runs take: how long each run holds its slot
//!   against its length (the slot-hold ratio), and runs/s against the
//!   limit's ideal (40 / 1.5 s).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use apalis::prelude::{BoxDynError, Data, Monitor, WorkerBuilder, WorkerBuilderExt};
use clap::{Args, Subcommand};
use gcrun_emulator::EmulatorConfig;
use gcrun_harness::{RedisOptions, RedisServer, SinkRules, WebhookSink};
use gcrun_model::RunStatus;
use gcrun_producer::{Producer, ProducerConfig};
use gcrun_queue::backend::{BackendSettings, EngineBackend};
use gcrun_queue::engine::{Engine, EngineLimits, Queue};
use gcrun_queue::{Job, PollJob};
use gcrun_worker::Worker;
use gcrun_worker::webhook::WebhookSecret;
use serde_json::json;
use tokio::sync::mpsc;

use crate::worker_cmd::{RedisArgs, WorkerArgs};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// The queue engine: idle latency, schedule lateness, commands per job,
    /// memory after retention, and a backlog drained by two workers.
    Queue(QueueBench),
    /// Operators' tools over a large dead-letter set (100,000 entries by
    /// default): listing pages, the dashboard, the CLI.
    Ops(crate::bench_ops::OpsBench),
}

#[derive(Args, Debug)]
pub struct QueueBench {
    /// Which scenarios, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "idle,lateness,commands,memory,drain")]
    scenarios: Vec<String>,
    /// Samples for the latency scenarios.
    #[arg(long, default_value_t = 300)]
    samples: usize,
    /// Jobs for the commands and memory scenarios.
    #[arg(long, default_value_t = 50_000)]
    jobs: usize,
    /// Runs enqueued before the workers start, in the drain scenario.
    #[arg(long, default_value_t = 100_000)]
    drain_runs: usize,
    /// Worker instances draining them (each its own apalis Monitor and
    /// Redis connections, in this process).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Runs of 1.5 s pushed through the concurrency limit, in the slots
    /// scenario.
    #[arg(long, default_value_t = 400)]
    slot_runs: usize,
    /// The concurrency limit (gcrun's and the emulator's), in the slots
    /// scenario.
    #[arg(long, default_value_t = 40)]
    slots: u32,
    #[command(flatten)]
    procs: crate::bench_procs::ProcArgs,
}

pub async fn run(cmd: BenchCommand) -> Result<()> {
    let args = match cmd {
        BenchCommand::Queue(args) => args,
        BenchCommand::Ops(args) => return crate::bench_ops::run(args).await,
    };
    for scenario in &args.scenarios {
        let line = match scenario.as_str() {
            "idle" => idle(&args).await?,
            "lateness" => lateness(&args).await?,
            "commands" => commands(&args).await?,
            "memory" => memory(&args).await?,
            "drain" => drain(&args).await?,
            "slots" => slots(&args).await?,
            "burst" => crate::bench_procs::burst(&args.procs).await?,
            "latency" => crate::bench_procs::latency(&args.procs).await?,
            "rate" => crate::bench_procs::rate(&args.procs).await?,
            "backlog" => backlog(&args).await?,
            other => {
                bail!(
                    "no scenario `{other}` (idle, lateness, commands, memory, drain, slots, burst, latency, rate, backlog)"
                )
            }
        };
        println!("{line}");
    }
    Ok(())
}

fn redis() -> Result<RedisServer> {
    RedisServer::try_start_with(RedisOptions::default()).map_err(|e| anyhow!(e))
}

async fn engine(redis: &RedisServer) -> Result<Engine> {
    let conn = gcrun_store::connect(&redis.url()).await?;
    Ok(Engine::new(conn, EngineLimits::default()))
}

async fn raw(redis: &RedisServer) -> Result<redis::aio::MultiplexedConnection> {
    Ok(redis::Client::open(redis.url())?.get_multiplexed_async_connection().await?)
}

/// Commands run so far, by name (`INFO commandstats`).
pub(crate) async fn commandstats(conn: &mut redis::aio::MultiplexedConnection) -> Result<HashMap<String, u64>> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await?;
    Ok(info
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_string(), calls))
        })
        .collect())
}

/// What ran between two snapshots (the INFO calls themselves left out).
pub(crate) fn spent(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> (u64, Vec<(String, u64)>) {
    let mut by: Vec<(String, u64)> = after
        .iter()
        .filter(|(k, _)| k.as_str() != "info")
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    by.sort_by_key(|b| std::cmp::Reverse(b.1));
    (by.iter().map(|(_, n)| n).sum(), by)
}

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> Result<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("no used_memory in INFO memory"))
}

pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

pub(crate) fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

type Started = mpsc::UnboundedSender<(u32, Instant)>;

/// The handler of the queue scenarios: tells when each job started.
async fn record(job: PollJob, started: Data<Started>) -> Result<(), BoxDynError> {
    let _ = started.send((job.attempt, Instant::now()));
    Ok(())
}

/// An apalis worker on the poll queue, as `gcrun worker` builds one
/// (fetch interval 5 s, the default; pub/sub wake-ups), until the returned sender says stop.
fn spawn_worker(redis: &RedisServer, engine: Engine, concurrency: usize) -> Result<(BenchWorker, Starts)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let listen = engine.listen(gcrun_store::Subscriber::new(gcrun_store::RedisTarget::new(redis.url())));
    let settings = BackendSettings { concurrency, max_idle: Duration::from_secs(5), ..BackendSettings::default() };
    let monitor = Monitor::new().register(move |_| {
        WorkerBuilder::new("bench")
            .backend(EngineBackend::<PollJob>::new(engine.clone(), Queue::Poll, settings))
            .data(tx.clone())
            .concurrency(concurrency)
            .build(record)
    });
    let monitor = tokio::spawn(monitor.run_with_signal(async move {
        let _ = stopped.wait_for(|s| *s).await;
        Ok(())
    }));
    Ok((BenchWorker { stop, monitor, listen }, Starts { rx, seen: HashMap::new() }))
}

fn poll(attempt: u32, after: Duration) -> Job {
    Job::Poll { run: gcrun_model::RunId::new(), generation: 1, attempt, after }
}

/// When each job started, as the worker reports them (in any order).
struct Starts {
    rx: mpsc::UnboundedReceiver<(u32, Instant)>,
    seen: HashMap<u32, Instant>,
}

impl Starts {
    /// When job `attempt` started (waiting for it up to 10 s).
    async fn of(&mut self, attempt: u32) -> Result<Instant> {
        let wait = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(at) = self.seen.remove(&attempt) {
                    return Some(at);
                }
                let (a, at) = self.rx.recv().await?;
                self.seen.insert(a, at);
            }
        });
        wait.await.ok().flatten().ok_or_else(|| anyhow!("job {attempt} did not start within 10 s"))
    }

    /// Waits until `n` more jobs have started.
    async fn count(&mut self, n: usize) -> Result<()> {
        for _ in 0..n {
            tokio::time::timeout(Duration::from_secs(60), self.rx.recv())
                .await?
                .ok_or_else(|| anyhow!("the worker stopped"))?;
        }
        Ok(())
    }
}

/// A running benchmark worker.
struct BenchWorker {
    stop: tokio::sync::watch::Sender<bool>,
    monitor: tokio::task::JoinHandle<Result<(), apalis::prelude::MonitorError>>,
    listen: tokio::task::JoinHandle<()>,
}

impl BenchWorker {
    /// Stops it gracefully (its last acks land before Redis goes away).
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.monitor.await;
        self.listen.abort();
    }
}

async fn idle(args: &QueueBench) -> Result<serde_json::Value> {
    let redis = redis()?;
    // The pusher has its own connection and wake-ups: only the scripts'
    // announcement can wake the worker, as across processes.
    let (pusher, worker) = (engine(&redis).await?, engine(&redis).await?);
    let (worker_handle, mut rx) = spawn_worker(&redis, worker, 16)?;
    pusher.push(&[poll(u32::MAX, Duration::ZERO)]).await?;
    rx.of(u32::MAX).await?;
    let mut latencies = Vec::with_capacity(args.samples);
    for i in 0..args.samples as u32 {
        tokio::time::sleep(Duration::from_millis(20)).await; // let the worker fall idle
        let t0 = Instant::now();
        pusher.push(&[poll(i, Duration::ZERO)]).await?;
        latencies.push(rx.of(i).await?.duration_since(t0).as_secs_f64() * 1000.0);
    }
    // What an idle worker costs Redis.
    let mut conn = raw(&redis).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = commandstats(&mut conn).await?;
    let window = Duration::from_secs(10);
    tokio::time::sleep(window).await;
    let (idle_commands, _) = spent(&before, &commandstats(&mut conn).await?);
    worker_handle.stop().await;
    latencies.sort_by(f64::total_cmp);
    Ok(json!({
        "scenario": "queue/idle",
        "samples": latencies.len(),
        "enqueue_to_fetched_ms": {"p50": round2(percentile(&latencies, 0.5)), "p99": round2(percentile(&latencies, 0.99)), "max": round2(percentile(&latencies, 1.0))},
        "idle_worker_redis_commands_per_s": round2(idle_commands as f64 / window.as_secs_f64()),
        "note": "one queue's worker (a worker process runs three), fetch interval 5 s (the default); pushes from another connection, woken by pub/sub",
    }))
}

async fn lateness(args: &QueueBench) -> Result<serde_json::Value> {
    let redis = redis()?;
    let (pusher, worker) = (engine(&redis).await?, engine(&redis).await?);
    let (worker_handle, mut rx) = spawn_worker(&redis, worker, 16)?;
    let mut rng = fastrand::Rng::with_seed(11);
    let (mut late, mut early) = (Vec::with_capacity(args.samples), 0usize);
    let mut next = 0u32;
    while (next as usize) < args.samples {
        // Ten at a time, due at different moments in the next 0.3 s.
        let group: Vec<(u32, Duration)> =
            (0..10).map(|k| (next + k, Duration::from_millis(rng.u64(20..300)))).collect();
        next += 10;
        let mut due = HashMap::new();
        for (attempt, after) in &group {
            let t0 = Instant::now();
            pusher.push(&[poll(*attempt, *after)]).await?;
            // Redis read its clock between t0 and now: the job is due no
            // earlier than t0 + after.
            due.insert(*attempt, t0 + *after);
        }
        for (attempt, _) in &group {
            let at = rx.of(*attempt).await?;
            let earliest_due = due[attempt];
            if at < earliest_due {
                early += 1;
            }
            late.push(at.saturating_duration_since(earliest_due).as_secs_f64() * 1000.0);
        }
    }
    worker_handle.stop().await;
    late.sort_by(f64::total_cmp);
    Ok(json!({
        "scenario": "queue/lateness",
        "samples": late.len(),
        "started_before_due": early,
        "lateness_ms": {"p50": round2(percentile(&late, 0.5)), "p99": round2(percentile(&late, 0.99)), "max": round2(percentile(&late, 1.0))},
        "note": "delays 20-300 ms, ten scheduled at a time, at idle; lateness measured from the earliest the job can be due (an upper bound)",
    }))
}

async fn commands(args: &QueueBench) -> Result<serde_json::Value> {
    let redis = redis()?;
    let (pusher, worker) = (engine(&redis).await?, engine(&redis).await?);
    let (worker_handle, mut rx) = spawn_worker(&redis, worker, 50)?;
    // Warm up: every script loaded.
    pusher.push(&[poll(u32::MAX, Duration::ZERO)]).await?;
    rx.of(u32::MAX).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut conn = raw(&redis).await?;
    let before = commandstats(&mut conn).await?;
    let n = args.jobs;
    let t0 = Instant::now();
    let jobs: Vec<Job> = (0..n as u32).map(|i| poll(i, Duration::ZERO)).collect();
    for chunk in jobs.chunks(500) {
        pusher.push(chunk).await?;
    }
    rx.count(n).await?;
    // Let the last acks land.
    let e = engine(&redis).await?;
    while e.depth(Queue::Poll).await?.done < n as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = t0.elapsed();
    let (total, by) = spent(&before, &commandstats(&mut conn).await?);
    worker_handle.stop().await;
    // The depth polls above are this benchmark's, not the job's.
    let breakdown: serde_json::Map<String, serde_json::Value> =
        by.iter().map(|(k, v)| (k.clone(), json!(round2(*v as f64 / n as f64)))).collect();
    Ok(json!({
        "scenario": "queue/commands",
        "jobs": n,
        "redis_commands_per_job": round2(total as f64 / n as f64),
        "per_job_by_command": breakdown,
        "jobs_per_s": round2(n as f64 / elapsed.as_secs_f64()),
        "note": "pushed in 500s, one worker (concurrency 50, batch 32) fetching and acking; counted from INFO commandstats, commands inside scripts included (includes this benchmark's depth checks at the end)",
    }))
}

async fn memory(args: &QueueBench) -> Result<serde_json::Value> {
    let redis = redis()?;
    let (pusher, worker) = (engine(&redis).await?, engine(&redis).await?);
    let (worker_handle, mut rx) = spawn_worker(&redis, worker, 50)?;
    let mut conn = raw(&redis).await?;
    // Scripts loaded and the engine's counters made before the baseline.
    pusher.push(&[poll(u32::MAX, Duration::ZERO)]).await?;
    rx.of(u32::MAX).await?;
    let retention = Duration::from_secs(2);
    tokio::time::sleep(retention + Duration::from_millis(200)).await;
    pusher.trim(Queue::Poll, retention, retention).await?;
    pusher.depth(Queue::Poll).await?; // every script this scenario uses is loaded
    tokio::time::sleep(Duration::from_secs(1)).await; // Redis's housekeeping
    let baseline = used_memory(&mut conn).await?;
    let n = args.jobs;
    let jobs: Vec<Job> = (0..n as u32).map(|i| poll(i, Duration::ZERO)).collect();
    for chunk in jobs.chunks(500) {
        pusher.push(chunk).await?;
    }
    let queued = used_memory(&mut conn).await?;
    rx.count(n).await?;
    while pusher.depth(Queue::Poll).await?.done < n as u64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let done = used_memory(&mut conn).await?;
    tokio::time::sleep(retention + Duration::from_millis(200)).await;
    // The sweeper's work, in its bounded slices.
    while pusher.trim(Queue::Poll, retention, retention).await? > 0 {}
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = used_memory(&mut conn).await?;
    worker_handle.stop().await;
    Ok(json!({
        "scenario": "queue/memory",
        "jobs": n,
        "used_memory_bytes": {"before": baseline, "queued": queued, "all_done": done, "after_retention": after},
        "bytes_per_queued_job": round2((queued.saturating_sub(baseline)) as f64 / n as f64),
        "after_vs_before": round2(after as f64 / baseline as f64),
        "note": "retention 2 s; after it, the bounded trim slices the sweeper runs",
    }))
}

/// Runs that have ended, from the store's counts.
pub(crate) async fn ended(store: &gcrun_store::Store) -> Result<i64> {
    let counts = store.counts().await?;
    Ok(RunStatus::ALL.iter().filter(|s| s.is_terminal()).map(|s| counts.get(s.as_str()).copied().unwrap_or(0)).sum())
}

/// A worker as `gcrun worker` would be configured for the benchmarks: no
/// limits of its own, 64 jobs at once per queue, fast polls.
fn bench_worker(redis_url: &str, region: &str, secret_text: &str, hook: &str, seed: u64) -> Result<WorkerArgs> {
    use gcrun_emulator::fixtures::demo::{CLIENT_ID, CLIENT_SECRET};
    Ok(WorkerArgs {
        redis: RedisArgs::local(redis_url.to_string()),
        region: region.to_string(),
        client_id: CLIENT_ID.into(),
        client_secret: Some(CLIENT_SECRET.into()),
        client_secret_file: None,
        admin_listen: "127.0.0.1:0".into(),
        submit_concurrency: 64,
        poll_concurrency: 64,
        webhook_concurrency: 64,
        rate_per_minute: 10_000_000,
        rate_burst: 100_000,
        rate_window_ms: 60_000,
        max_concurrent: 100_000,
        webhook_secret: Some(secret_text.to_string()),
        webhook_secret_file: None,
        default_webhook_url: Some(hook.parse()?),
        webhook_allowed_hosts: None,
        at_least_once: None,
        // The receiver listens on loopback.
        webhook_private_networks: true,
        slot_wait_ms: 30_000,
        max_webhook_attempts: 12,
        max_submit_attempts: 20,
        poll_base_ms: 50,
        poll_cap_ms: 1_000,
        learn_poll_timing: true,
        webhook_inline: true,
        fetch_interval_ms: 5_000,
        lease_secs: 30,
        shutdown_timeout_secs: 10,
        done_retention_secs: 3_600,
        dead_job_retention_secs: 86_400,
        jitter_seed: Some(seed),
    })
}

async fn drain(args: &QueueBench) -> Result<serde_json::Value> {
    drain_pass(args.drain_runs, args.workers).await
}

/// `backlog`: the drain with 1,000 runs queued, then with 100,000: does a
/// deep queue slow the engine down?
async fn backlog(args: &QueueBench) -> Result<serde_json::Value> {
    let small = drain_pass(1_000, args.workers).await?;
    let large = drain_pass(100_000, args.workers).await?;
    let rate = |v: &serde_json::Value| v["first_1000_submits_per_s"].as_f64().unwrap_or(f64::NAN);
    Ok(json!({
        "scenario": "queue/backlog",
        "queued_1000": small,
        "queued_100000": large,
        "ratio_first_1000_submits": round2(rate(&large) / rate(&small)),
        "note": "the drain scenario at two backlog sizes; compared: how fast the first 1,000 runs are taken off the queue and submitted (the 100th to the 900th), the same work in both; a 1,000-run drain as a whole is one wave of polls a second after its submits, too short for a rate",
    }))
}

async fn drain_pass(n: usize, worker_count: usize) -> Result<serde_json::Value> {
    let redis = redis()?;
    let emulator = gcrun_emulator::Emulator::new(EmulatorConfig::zero_latency());
    let emu_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let emu_addr = emu_listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopper = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(gcrun_emulator::serve(emu_listener, emulator.clone(), stopper(stop_rx.clone())));
    let (secret, secret_text) = WebhookSecret::generate();
    let verify = Arc::new(move |id: &str, ts: u64, body: &[u8], sig: &str| secret.verify(id, ts, body, sig));
    let rules = SinkRules { refuse_during: Duration::ZERO, refuse_first_attempt_one_in: 0 };
    let sink = WebhookSink::start(verify, rules).await?;

    let worker_args = |seed: u64| -> Result<WorkerArgs> {
        bench_worker(&redis.url(), &format!("http://{emu_addr}"), &secret_text, &sink.url, seed)
    };

    // Enqueue everything while no worker runs.
    let first = Worker::build(worker_args(1)?.settings()?).await?;
    let (store, queues) = (first.deps().store().clone(), first.deps().queues().clone());
    let producer = Producer::new(
        store.clone(),
        queues.clone(),
        ProducerConfig { run_deadline: Duration::from_secs(3_600), ..ProducerConfig::default() },
    );
    let mut conn = raw(&redis).await?;
    let before_enqueue = commandstats(&mut conn).await?;
    let t_enqueue = Instant::now();
    let mut enqueued = 0usize;
    for start in (0..n).step_by(1_000) {
        let docs: Vec<serde_json::Value> = (start..(start + 1_000).min(n))
            .map(|i| {
                json!({"flavor": "runs", "actionId": gcrun_emulator::fixtures::demo::LOOKUP,
                       "inputs": {"customerId": format!("c-{i}"), "channel": "chat"}})
            })
            .collect();
        enqueued += producer.enqueue_batch(&docs).await?.iter().filter(|r| r.is_ok()).count();
    }
    let enqueue_s = t_enqueue.elapsed().as_secs_f64();
    if enqueued != n {
        bail!("only {enqueued} of {n} runs were accepted");
    }
    let (enqueue_commands, _) = spent(&before_enqueue, &commandstats(&mut conn).await?);
    let backlog = queues.depth(&queues.names.submit).await?;

    let before = commandstats(&mut conn).await?;
    let t0 = Instant::now();
    let mut workers = vec![first];
    for seed in 2..=worker_count.max(1) as u64 {
        workers.push(Worker::build(worker_args(seed)?.settings()?).await?);
    }
    let tasks: Vec<_> = workers.into_iter().map(|w| tokio::spawn(w.run(None, stopper(stop_rx.clone())))).collect();
    let deadline = Instant::now() + Duration::from_secs(3_600);
    // When the 100th and the 900th runs had been submitted.
    let (mut at_100, mut at_900) = (None, None);
    loop {
        let counts = store.counts().await?;
        let count = |s: RunStatus| counts.get(s.as_str()).copied().unwrap_or(0);
        let terminal: i64 = RunStatus::ALL.iter().filter(|s| s.is_terminal()).map(|s| count(*s)).sum();
        let submitted = terminal + count(RunStatus::Submitted) + count(RunStatus::Queued) + count(RunStatus::Running);
        if at_100.is_none() && submitted >= 100 {
            at_100 = Some((Instant::now(), submitted));
        }
        if at_900.is_none() && submitted >= 900 {
            at_900 = Some((Instant::now(), submitted));
        }
        if terminal >= n as i64 {
            // Every run ended: done once no job is left either.
            let mut pending = 0;
            for q in queues.names.all() {
                pending += queues.depth(q).await?.pending();
            }
            if pending == 0 {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("the backlog did not drain within an hour ({terminal} of {n} ended)");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain_s = t0.elapsed().as_secs_f64();
    let first_submits = match (at_100, at_900) {
        (Some((t1, e1)), Some((t2, e2))) if t2 > t1 => (e2 - e1) as f64 / t2.duration_since(t1).as_secs_f64(),
        _ => f64::NAN,
    };
    let (total, by) = spent(&before, &commandstats(&mut conn).await?);
    let completed = store.counts().await?.get(RunStatus::Completed.as_str()).copied().unwrap_or(0);
    let delivered = sink.with_log(|log| log.unique_events());
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let top: serde_json::Map<String, serde_json::Value> =
        by.iter().take(16).map(|(k, v)| (k.clone(), json!(round2(*v as f64 / n as f64)))).collect();
    Ok(json!({
        "scenario": "queue/drain",
        "runs": n,
        "workers": worker_count.max(1),
        "enqueue_s": round2(enqueue_s),
        "backlog_ready_at_start": backlog.ready,
        "drain_s": round2(drain_s),
        "runs_per_s": round2(n as f64 / drain_s),
        "first_1000_submits_per_s": round2(first_submits),
        "completed": completed,
        "webhooks_delivered": delivered,
        "redis_commands_per_run": round2(total as f64 / n as f64),
        "enqueue_redis_commands_per_run": round2(enqueue_commands as f64 / n as f64),
        "per_run_by_command": top,
        "note": "runs flavor, emulator with zero latency and no limits, one webhook each; workers in this process (each its own Monitor and connections); commands include this benchmark's progress checks",
    }))
}

/// One pass of the slots scenario: `n` runs of `run_for` through `slots`
/// at once, first polls learnt or not.
async fn slot_pass(n: usize, slots: u32, run_for: Duration, learn: bool) -> Result<serde_json::Value> {
    let redis = redis()?;
    let config = EmulatorConfig {
        timings: gcrun_emulator::Timings {
            queued_for: Duration::from_millis(100),
            running_for: run_for.saturating_sub(Duration::from_millis(100)),
            execute_for: Duration::ZERO,
        },
        limits: gcrun_emulator::Limits { max_concurrent: Some(slots), ..EmulatorConfig::zero_latency().limits },
        ..EmulatorConfig::default()
    };
    let emulator = gcrun_emulator::Emulator::new(config);
    let emu_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let emu_addr = emu_listener.local_addr()?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut emu_stop = stop_rx.clone();
    tokio::spawn(gcrun_emulator::serve(emu_listener, emulator, async move {
        let _ = emu_stop.wait_for(|s| *s).await;
    }));
    let (secret, secret_text) = WebhookSecret::generate();
    let verify = Arc::new(move |id: &str, ts: u64, body: &[u8], sig: &str| secret.verify(id, ts, body, sig));
    let sink =
        WebhookSink::start(verify, SinkRules { refuse_during: Duration::ZERO, refuse_first_attempt_one_in: 0 }).await?;
    // What a user gets: the default poll schedule (1 s, doubling, 30 s cap).
    let worker_args = WorkerArgs {
        max_concurrent: slots,
        poll_base_ms: 1_000,
        poll_cap_ms: 30_000,
        learn_poll_timing: learn,
        ..bench_worker(&redis.url(), &format!("http://{emu_addr}"), &secret_text, &sink.url, 1)?
    };
    let worker = Worker::build(worker_args.settings()?).await?;
    let store = worker.deps().store().clone();
    let producer = Producer::new(
        store.clone(),
        worker.deps().queues().clone(),
        ProducerConfig { run_deadline: Duration::from_secs(3_600), ..ProducerConfig::default() },
    );
    let task = tokio::spawn(worker.run(None, async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    let docs: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            json!({"flavor": "runs", "actionId": gcrun_emulator::fixtures::demo::LOOKUP,
                   "inputs": {"customerId": format!("s-{i}"), "channel": "chat"}})
        })
        .collect();
    let mut ids = Vec::new();
    for chunk in docs.chunks(1_000) {
        for r in producer.enqueue_batch(chunk).await? {
            ids.push(r.map_err(|v| anyhow!("a run was refused: {v:?}"))?.run_id);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let ended = ended(&store).await?;
        if ended >= n as i64 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the runs did not end within 10 minutes ({ended} of {n})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(true);
    let _ = task.await;
    let mut ratios = Vec::new();
    let mut by_submission: Vec<(u64, f64)> = Vec::new();
    let (mut first, mut last, mut completed, mut polls) = (u64::MAX, 0u64, 0usize, 0u64);
    for id in &ids {
        let Some(r) = store.get_run(id).await? else { continue };
        if r.status != RunStatus::Completed {
            continue;
        }
        let (Some(sub), Some(end)) = (r.submitted_ms, r.completed_ms) else { continue };
        completed += 1;
        // The counter moves on with each poll that finds the run going on;
        // the one that sees its end is one more.
        polls += u64::from(r.poll_attempts) + 1;
        first = first.min(sub);
        last = last.max(end);
        let ratio = end.saturating_sub(sub) as f64 / run_for.as_millis() as f64;
        ratios.push(ratio);
        by_submission.push((sub, ratio));
    }
    ratios.sort_by(|a, b| a.total_cmp(b));
    // Warm: the runs submitted after the first fifth (the cold start over).
    by_submission.sort_by_key(|(sub, _)| *sub);
    let mut warm: Vec<f64> = by_submission.iter().skip(by_submission.len() / 5).map(|(_, r)| *r).collect();
    warm.sort_by(|a, b| a.total_cmp(b));
    let span = last.saturating_sub(first).max(1) as f64 / 1000.0;
    let ideal = f64::from(slots) / run_for.as_secs_f64();
    Ok(json!({
        "first_poll": if learn { "learnt" } else { "fixed schedule" },
        "completed": completed,
        "slot_hold_p50": round2(percentile(&ratios, 0.50)),
        "slot_hold_p99": round2(percentile(&ratios, 0.99)),
        "slot_hold_max": round2(ratios.last().copied().unwrap_or(0.0)),
        "warm_slot_hold_p50": round2(percentile(&warm, 0.50)),
        "warm_slot_hold_p99": round2(percentile(&warm, 0.99)),
        "runs_per_s": round2(completed as f64 / span),
        "share_of_ideal": round2(completed as f64 / span / ideal),
        "polls_per_run": round2(polls as f64 / completed.max(1) as f64),
    }))
}

async fn slots(args: &QueueBench) -> Result<serde_json::Value> {
    let run_for = Duration::from_millis(1_500);
    let fixed = slot_pass(args.slot_runs, args.slots, run_for, false).await?;
    let learnt = slot_pass(args.slot_runs, args.slots, run_for, true).await?;
    Ok(json!({
        "scenario": "queue/slots",
        "runs": args.slot_runs,
        "slots": args.slots,
        "run_ms": run_for.as_millis() as u64,
        "ideal_runs_per_s": round2(f64::from(args.slots) / run_for.as_secs_f64()),
        "passes": [fixed, learnt],
        "note": "runs flavor on the emulator (queued 100 ms, then running), gcrun's and the emulator's limit of `slots` at once, the default poll schedule; the slot-hold ratio is (end seen - submitted) / run length, from the records; each pass starts cold (the learnt one's first runs use the schedule); warm_*: the runs submitted after the first fifth",
    }))
}
