//! The `gcrun bench queue` scenarios that run gcrun as a user deploys it:
//! each worker is its own `gcrun worker` process, the emulator is its own
//! `gcrun emulator` process, and this process enqueues and receives the
//! webhooks. Separate processes are what let the CPU of each part be read
//! apart (`/proc/<pid>/stat`, Redis's `INFO cpu`) and a worker's peak
//! RSS be its own (`VmHWM`).
//!
//! - `burst`: N runs (default 20,000) enqueued at once to idle workers:
//!   runs/s from the first enqueue to the last webhook received,
//!   enqueue→submitted under the burst, CPU-ms per run of each process,
//!   worker peak RSS, Redis commands per run;
//! - `latency`: single runs at idle, one at a time: enqueue→submitted;
//! - `rate`: the emulator enforcing the reference's org limits (2,500
//!   executions a minute, 50 at once; `--rate-window-ms` scales the
//!   minute), three worker processes told the same limits, a backlog
//!   larger than the windows can take: how much of the limit gcrun uses,
//!   how many 429s its own traffic caused, and the peak concurrency the
//!   emulator saw.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use gcrun_emulator::fixtures::demo::{CLIENT_ID, CLIENT_SECRET, LOOKUP};
use gcrun_harness::{RedisOptions, RedisServer, SinkRules, WebhookSink};
use gcrun_model::RunId;
use gcrun_producer::{Producer, ProducerConfig};
use gcrun_store::Store;
use gcrun_worker::webhook::WebhookSecret;
use serde_json::{Value, json};

use crate::bench::{commandstats, ended, percentile, round2, spent};
use crate::worker_cmd::RedisArgs;

/// Settings of the process scenarios.
#[derive(Args, Debug, Clone)]
pub struct ProcArgs {
    /// Runs in the burst scenario.
    #[arg(long, default_value_t = 20_000)]
    pub burst_runs: usize,
    /// Worker processes in the burst scenario, comma-separated for several
    /// passes (e.g. 1,2,4).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub burst_workers: Vec<usize>,
    /// The flavor mix of the burst: `runs` (submit, poll, webhook) or
    /// `mix` (every other run `execute`: one call answers it).
    #[arg(long, default_value = "runs")]
    pub burst_flavor: String,
    /// Single runs in the latency scenario.
    #[arg(long, default_value_t = 300)]
    pub latency_runs: usize,
    /// Windows (minutes, unless scaled) the rate scenario lasts.
    #[arg(long, default_value_t = 2)]
    pub rate_minutes: u64,
    /// The rate window in ms, the emulator's and the workers' (a minute, as
    /// Genesys counts; shorter for scaled minutes).
    #[arg(long, default_value_t = 60_000)]
    pub rate_window_ms: u64,
    /// Executions a minute the emulator allows and the workers are told.
    #[arg(long, default_value_t = 2_500)]
    pub rate_limit: u32,
    /// Runs in progress at once the emulator allows and the workers are told.
    #[arg(long, default_value_t = 50)]
    pub rate_concurrent: u32,
}

/// A gcrun child process (worker or emulator), killed when dropped.
struct Proc {
    child: Child,
    /// The address it printed on its first line (`http://...`).
    url: String,
}

impl Proc {
    /// Starts `cmd` and waits (up to 30 s) for the address it prints first.
    fn spawn(what: &str, mut cmd: Command) -> Result<Proc> {
        let mut child =
            cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().with_context(|| format!("starting {what}"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("{what}: no stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Keep draining, so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let mut proc = Proc { child, url: String::new() };
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(Ok(line))) => line,
            _ => bail!("{what} printed no address within 30 s"),
        };
        let at = line.find("http://").ok_or_else(|| anyhow!("{what} printed `{line}`, not an address"))?;
        proc.url = line[at..].trim().to_string();
        Ok(proc)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time it has used, in ms (all its threads).
    fn cpu_ms(&self) -> Result<f64> {
        cpu_ms_of(&self.pid().to_string())
    }

    /// Its peak resident set, in MiB.
    fn peak_rss_mib(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no VmHWM in /proc/{}/status", self.pid()))?;
        Ok(kib / 1024.0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time of process `pid` (`self` for this one), in ms: user and
/// system time of all its threads, those that ended included, from
/// `/proc/<pid>/stat` (in clock ticks: USER_HZ, 100 on Linux).
fn cpu_ms_of(pid: &str) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("reading /proc/<pid>/stat")?;
    // The command name, in parentheses, may hold spaces: count from after it.
    let rest = text.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| anyhow!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name.
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).ok_or_else(|| anyhow!("/proc/{pid}/stat"));
    Ok((tick(11)? + tick(12)?) * 10.0)
}

/// Redis's CPU time so far (user + system, main and I/O threads), in ms.
async fn redis_cpu_ms(conn: &mut redis::aio::MultiplexedConnection) -> Result<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await?;
    let field = |name: &str| -> f64 {
        info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok()).unwrap_or(0.0)
    };
    Ok((field("used_cpu_user") + field("used_cpu_sys")) * 1000.0)
}

/// The emulator as its own process.
fn emulator(extra: &[&str]) -> Result<Proc> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["emulator", "--listen", "127.0.0.1:0"]).args(extra).env("GCRUN_LOG", "warn");
    Proc::spawn("gcrun emulator", cmd)
}

/// What every worker process of a scenario is given.
struct WorkerEnv<'a> {
    redis_url: &'a str,
    region: &'a str,
    secret: &'a str,
    hook: &'a str,
    rate_per_minute: u32,
    rate_burst: u32,
    rate_window_ms: u64,
    max_concurrent: u32,
}

impl<'a> WorkerEnv<'a> {
    /// Workers with no limits of their own, against `emu`.
    fn unlimited(b: &'a Base, redis_url: &'a str, emu: &'a Proc) -> Self {
        WorkerEnv {
            redis_url,
            region: &emu.url,
            secret: &b.secret_text,
            hook: &b.sink.url,
            rate_per_minute: 10_000_000,
            rate_burst: 100_000,
            rate_window_ms: 60_000,
            max_concurrent: 1_000_000,
        }
    }
}

/// The emulator with zero latency and its own limits off.
fn unlimited_emulator() -> Result<Proc> {
    emulator(&[
        "--queued-ms",
        "0",
        "--running-ms",
        "0",
        "--execute-ms",
        "0",
        "--rate-limit",
        "0",
        "--max-concurrent",
        "0",
    ])
}

/// `gcrun worker` as its own process, ready (its `/readyz` answered 200).
async fn worker(env: &WorkerEnv<'_>, seed: usize) -> Result<Proc> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["worker", "--admin-listen", "127.0.0.1:0"])
        .args(["--submit-concurrency", "64", "--poll-concurrency", "64", "--webhook-concurrency", "64"])
        .args(["--rate-per-minute", &env.rate_per_minute.to_string(), "--rate-burst", &env.rate_burst.to_string()])
        .args(["--max-concurrent", &env.max_concurrent.to_string()])
        .args(["--rate-window-ms", &env.rate_window_ms.to_string()])
        .args(["--poll-base-ms", "50", "--poll-cap-ms", "1000", "--jitter-seed", &seed.to_string()])
        .args(["--default-webhook-url", env.hook, "--webhook-private-networks", "true"])
        .env("REDIS_URL", env.redis_url)
        .env("GENESYSCLOUD_REGION", env.region)
        .env("GENESYSCLOUD_OAUTHCLIENT_ID", CLIENT_ID)
        .env("GENESYSCLOUD_OAUTHCLIENT_SECRET", CLIENT_SECRET)
        .env("GCRUN_WEBHOOK_SECRET", env.secret)
        .env("GCRUN_LOG", "warn");
    let proc = Proc::spawn("gcrun worker", cmd)?;
    let ready = format!("{}/readyz", proc.url.trim_end_matches('/'));
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if http.get(&ready).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(proc);
        }
        if Instant::now() > deadline {
            bail!("the worker at {} was not ready within 30 s", proc.url);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Redis, a webhook sink checking every signature, and the producer.
struct Base {
    redis: RedisServer,
    sink: WebhookSink,
    secret_text: String,
    store: Store,
    producer: Producer,
}

async fn base() -> Result<Base> {
    let redis = RedisServer::try_start_with(RedisOptions::default()).map_err(|e| anyhow!(e))?;
    let (secret, secret_text) = WebhookSecret::generate();
    let verify = std::sync::Arc::new(move |id: &str, ts: u64, body: &[u8], sig: &str| secret.verify(id, ts, body, sig));
    let sink =
        WebhookSink::start(verify, SinkRules { refuse_during: Duration::ZERO, refuse_first_attempt_one_in: 0 }).await?;
    let (store, queues) = RedisArgs::local(redis.url()).open().await?;
    let producer = Producer::new(
        store.clone(),
        queues,
        ProducerConfig { run_deadline: Duration::from_secs(3_600), ..ProducerConfig::default() },
    );
    Ok(Base { redis, sink, secret_text, store, producer })
}

async fn raw(redis: &RedisServer) -> Result<redis::aio::MultiplexedConnection> {
    Ok(redis::Client::open(redis.url())?.get_multiplexed_async_connection().await?)
}

fn run_doc(i: usize, flavor: &str) -> Value {
    let flavor = if flavor == "mix" && i % 2 == 1 { "execute" } else { "runs" };
    json!({"flavor": flavor, "actionId": LOOKUP, "inputs": {"customerId": format!("c-{i}"), "channel": "chat"}})
}

/// Waits until `n` webhooks have been received (each run sends one).
async fn wait_webhooks(sink: &WebhookSink, store: &Store, n: usize, limit: Duration) -> Result<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        if sink.with_log(|log| log.accepted.len()) >= n {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            let got = sink.with_log(|log| log.accepted.len());
            bail!("{got} of {n} webhooks within {limit:?} ({} runs ended)", ended(store).await?);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Enqueue→submitted of each run, in ms, from the records (the producer's
/// clock at the enqueue call, the worker's when Genesys answered the
/// submit; one machine, so one clock; resolution 1 ms).
async fn submit_latencies(store: &Store, ids: &[RunId]) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(r) = store.get_run(id).await? {
            if let Some(sub) = r.submitted_ms {
                out.push(sub.saturating_sub(r.created_ms) as f64);
            }
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

fn quantiles(sorted: &[f64]) -> Value {
    json!({"p50": round2(percentile(sorted, 0.5)), "p99": round2(percentile(sorted, 0.99)), "max": round2(percentile(sorted, 1.0))})
}

pub async fn burst(args: &ProcArgs) -> Result<Value> {
    let mut passes = Vec::new();
    for &workers in &args.burst_workers {
        passes.push(burst_pass(args, workers.max(1)).await?);
    }
    Ok(json!({
        "scenario": "queue/burst",
        "runs": args.burst_runs,
        "flavor": args.burst_flavor,
        "passes": passes,
        "note": "each worker a `gcrun worker` process (64 jobs at once per queue, no limits of its own, poll base 50 ms, 1 s poll floor), the emulator a `gcrun emulator` process with zero latency and no limits, this process enqueueing (batches of 1,000) and receiving the webhooks (signatures checked); runs/s from the first enqueue to the last webhook received; Redis commands counted from INFO commandstats, inside scripts included",
    }))
}

async fn burst_pass(args: &ProcArgs, workers: usize) -> Result<Value> {
    let b = base().await?;
    let emu = unlimited_emulator()?;
    let redis_url = b.redis.url();
    let env = WorkerEnv::unlimited(&b, &redis_url, &emu);
    let mut procs = Vec::new();
    for seed in 0..workers {
        procs.push(worker(&env, seed + 1).await?);
    }
    // Warm up: a token, the action's contract, every script loaded.
    b.producer.enqueue_value(&run_doc(usize::MAX, "runs")).await?;
    wait_webhooks(&b.sink, &b.store, 1, Duration::from_secs(30)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.sink.with_log(|log| log.accepted.clear());

    let n = args.burst_runs;
    let mut conn = raw(&b.redis).await?;
    let stats_before = commandstats(&mut conn).await?;
    let redis_before = redis_cpu_ms(&mut conn).await?;
    let worker_before: Vec<f64> = procs.iter().map(Proc::cpu_ms).collect::<Result<_>>()?;
    let emu_before = emu.cpu_ms()?;
    let own_before = cpu_ms_of("self")?;

    let t0 = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for start in (0..n).step_by(1_000) {
        let docs: Vec<Value> = (start..(start + 1_000).min(n)).map(|i| run_doc(i, &args.burst_flavor)).collect();
        for r in b.producer.enqueue_batch(&docs).await? {
            ids.push(r.map_err(|v| anyhow!("a run was refused: {v}"))?.run_id);
        }
    }
    let enqueued_s = t0.elapsed().as_secs_f64();
    let last = wait_webhooks(&b.sink, &b.store, n, Duration::from_secs(600)).await?;
    let elapsed = last.duration_since(t0).as_secs_f64();

    let worker_ms: Vec<f64> =
        procs.iter().zip(&worker_before).map(|(p, before)| Ok(p.cpu_ms()? - before)).collect::<Result<_>>()?;
    let emu_ms = emu.cpu_ms()? - emu_before;
    let own_ms = cpu_ms_of("self")? - own_before;
    let redis_ms = redis_cpu_ms(&mut conn).await? - redis_before;
    let (commands, by) = spent(&stats_before, &commandstats(&mut conn).await?);
    let rss: Vec<f64> = procs.iter().map(Proc::peak_rss_mib).collect::<Result<_>>()?;
    drop(procs);
    // How often the workers read the action's definition (one action, one
    // cache period): the warm-up's read, then none.
    let stats: Value = reqwest::get(format!("{}/emulator/stats", emu.url.trim_end_matches('/')))
        .await?
        .error_for_status()?
        .json()
        .await?;
    let definition_reads: u64 = stats["requests"]["GET /api/v2/integrations/actions/{actionId}"]
        .as_object()
        .map_or(0, |by_status| by_status.values().filter_map(Value::as_u64).sum());
    let duplicates = b.sink.with_log(|log| log.duplicates());
    let latencies = submit_latencies(&b.store, &ids).await?;

    let per_run = |ms: f64| round2(ms / n as f64 * 1000.0) / 1000.0;
    let worker_total: f64 = worker_ms.iter().sum();
    let all = worker_total + emu_ms + own_ms + redis_ms;
    let share = |ms: f64| round2(ms / all);
    let top: serde_json::Map<String, Value> =
        by.iter().map(|(k, v)| (k.clone(), json!(round2(*v as f64 / n as f64)))).collect();
    Ok(json!({
        "workers": workers,
        "runs_per_s": round2(n as f64 / elapsed),
        "elapsed_s": round2(elapsed),
        "enqueue_s": round2(enqueued_s),
        "enqueue_to_submitted_ms": quantiles(&latencies),
        "worker_cpu_ms_per_run": per_run(worker_total),
        "redis_cpu_ms_per_run": per_run(redis_ms),
        "emulator_cpu_ms_per_run": per_run(emu_ms),
        "producer_and_sink_cpu_ms_per_run": per_run(own_ms),
        "cpu_share": {"workers": share(worker_total), "redis": share(redis_ms), "emulator": share(emu_ms), "producer_and_sink": share(own_ms)},
        "cpu_cores_busy": round2(all / 1000.0 / elapsed),
        "worker_peak_rss_mib": rss.iter().map(|r| round2(*r)).collect::<Vec<_>>(),
        "redis_commands_per_run": round2(commands as f64 / n as f64),
        "per_run_by_command": top,
        "webhook_duplicates": duplicates,
        "definition_reads": definition_reads,
    }))
}

pub async fn latency(args: &ProcArgs) -> Result<Value> {
    let b = base().await?;
    let emu = unlimited_emulator()?;
    let redis_url = b.redis.url();
    let env = WorkerEnv::unlimited(&b, &redis_url, &emu);
    let _worker = worker(&env, 1).await?;
    b.producer.enqueue_value(&run_doc(usize::MAX, "runs")).await?;
    wait_webhooks(&b.sink, &b.store, 1, Duration::from_secs(30)).await?;
    let mut ids = Vec::with_capacity(args.latency_runs);
    for i in 0..args.latency_runs {
        // One at a time, each after the last one's webhook and a pause:
        // the worker is idle (blocked on its wake-up) when each arrives.
        tokio::time::sleep(Duration::from_millis(30)).await;
        ids.push(b.producer.enqueue_value(&run_doc(i, "runs")).await?.run_id);
        wait_webhooks(&b.sink, &b.store, i + 2, Duration::from_secs(30)).await?;
    }
    let latencies = submit_latencies(&b.store, &ids).await?;
    Ok(json!({
        "scenario": "queue/latency",
        "runs": latencies.len(),
        "enqueue_to_submitted_ms": quantiles(&latencies),
        "note": "one `gcrun worker` process at idle (fetch interval 5 s: only the pub/sub wake-up brings a run in), the emulator a process with zero latency; from the records (the enqueue call's clock to the submit's answer; 1 ms resolution)",
    }))
}

pub async fn rate(args: &ProcArgs) -> Result<Value> {
    let b = base().await?;
    let (limit, concurrent) = (args.rate_limit, args.rate_concurrent);
    // Half-second runs: 2,500 a minute need about 21 at once, well under
    // 50, so the rate is what binds.
    let emu = emulator(&[
        "--queued-ms",
        "100",
        "--running-ms",
        "400",
        "--rate-limit",
        &limit.to_string(),
        "--rate-window-ms",
        &args.rate_window_ms.to_string(),
        "--max-concurrent",
        &concurrent.to_string(),
    ])?;
    let env = WorkerEnv {
        redis_url: &b.redis.url(),
        region: &emu.url,
        secret: &b.secret_text,
        hook: &b.sink.url,
        rate_per_minute: limit,
        rate_burst: 50.min(limit),
        rate_window_ms: args.rate_window_ms,
        max_concurrent: concurrent,
    };
    let minutes = args.rate_minutes.max(1);
    // More than the minutes can take, all queued before the workers start.
    let n = (u64::from(limit) * minutes + u64::from(limit) / 2) as usize;
    for start in (0..n).step_by(1_000) {
        let docs: Vec<Value> = (start..(start + 1_000).min(n)).map(|i| run_doc(i, "runs")).collect();
        for r in b.producer.enqueue_batch(&docs).await? {
            r.map_err(|v| anyhow!("a run was refused: {v}"))?;
        }
    }
    let http = reqwest::Client::new();
    let stats_url = format!("{}/emulator/stats", emu.url.trim_end_matches('/'));
    let stats = || async { http.get(&stats_url).send().await?.error_for_status()?.json::<Value>().await };
    let mut procs = Vec::new();
    for seed in 0..3 {
        procs.push(worker(&env, seed + 1).await?);
    }
    // Counted from here: what the first workers submitted while the others
    // started is left out.
    let t0 = Instant::now();
    let first = stats().await?["submissions"].as_u64().unwrap_or(0);
    let mut per_minute = Vec::new();
    let mut last = first;
    let window = Duration::from_millis(args.rate_window_ms.max(1));
    for m in 1..=minutes {
        let at = t0 + window * m as u32;
        tokio::time::sleep_until(at.into()).await;
        let submissions = stats().await?["submissions"].as_u64().unwrap_or(0);
        per_minute.push(submissions - last);
        last = submissions;
    }
    let s = stats().await?;
    drop(procs);
    let used = (last - first) as f64 / (f64::from(limit) * minutes as f64);
    Ok(json!({
        "scenario": "queue/rate",
        "limit_per_minute": limit,
        "limit_concurrent": concurrent,
        "windows": minutes,
        "window_ms": args.rate_window_ms,
        "worker_processes": 3,
        "submissions_per_window": per_minute,
        "share_of_limit": round2(used),
        "limit_429s": s["limitTooManyRequests"].as_u64().or(s["limit429s"].as_u64()).unwrap_or(0),
        "too_many_requests": s["tooManyRequests"].as_u64().unwrap_or(0),
        "peak_concurrency": s["peakConcurrency"].as_u64().unwrap_or(0),
        "note": "the emulator a process enforcing the limits (a sliding minute of executions, runs in progress at once), its per-token request limit off (Genesys's 300 requests a minute per token would cap polled runs first); runs of 0.5 s; three `gcrun worker` processes sharing the limiter, told the same limits with a burst of 50; the backlog queued before they start; windows counted from when the workers are ready",
    }))
}
