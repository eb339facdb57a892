//! `gcrun demo`: the main job end to end on this machine, with nothing to
//! set up but `redis-server`. It starts a private Redis, the emulator (some
//! faults on), a worker and a webhook receiver that verifies signatures and
//! fails at first; enqueues a mixed batch over the three flavors; shows
//! live progress; prints a summary; and stops everything it started.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use clap::Args;
use gcrun_emulator::{EmulatorConfig, Faults, Limits, Timings};
use gcrun_harness::{RedisOptions, RedisServer, SinkRules, WebhookSink};
use gcrun_model::{RunId, RunStatus};
use gcrun_producer::{Producer, ProducerConfig};
use gcrun_worker::Worker;
use gcrun_worker::webhook::WebhookSecret;
use serde_json::{Value, json};

use crate::worker_cmd::{RedisArgs, WorkerArgs};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// How many runs to enqueue.
    #[arg(long, default_value_t = 300)]
    runs: usize,
    /// Seed of the batch mix and the emulator's faults.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Give up waiting after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Keep Redis, the emulator and the worker up after the summary, until
    /// Ctrl-C, to look around with the commands it prints.
    #[arg(long)]
    keep: bool,
    /// Aim first polls at what each action's runs take (`false`: the fixed
    /// schedule, to compare).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    learn_poll_timing: bool,
}

use gcrun_emulator::fixtures::demo::{
    CALLBACK, CASE, CLIENT_ID, CLIENT_SECRET, LOOKUP, ORDER_FLOW, SCORE, SURVEY_FLOW,
};

/// The mixed batch: the three flavors, valid and invalid inputs, transient
/// errors, failures and runs that never finish.
fn batch(n: usize, seed: u64) -> Vec<Value> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..n)
        .map(|i| {
            let scenario = rng.u32(0..100);
            let note = match scenario {
                0..=9 => "emulator:transient=2",
                10..=14 => "emulator:fail",
                15..=16 => "emulator:never",
                _ => "",
            };
            let invalid = (17..=24).contains(&scenario);
            let mut doc = match i % 3 {
                0 | 1 => {
                    let flavor = if i % 3 == 0 { "runs" } else { "execute" };
                    let (action, inputs) = match rng.u32(0..4) {
                        0 if invalid => (LOOKUP, json!({"customerId": "far-too-long-customer-id", "channel": "fax"})),
                        0 => (LOOKUP, json!({"customerId": format!("c-{i}"), "channel": "chat"})),
                        1 if invalid => (CALLBACK, json!({"phoneNumber": "call me maybe", "priority": 9})),
                        1 => (CALLBACK, json!({"phoneNumber": format!("+44 20 7946 {i:04}"), "priority": 2})),
                        2 if invalid => (SCORE, json!({"amount": -5, "vip": "yes"})),
                        2 => (SCORE, json!({"amount": i, "vip": i % 2 == 0, "region": "emea"})),
                        _ if invalid => (CASE, json!({"status": "reopened"})),
                        _ => (CASE, json!({"caseId": format!("case-{i}"), "status": "pending"})),
                    };
                    json!({"flavor": flavor, "actionId": action, "inputs": inputs})
                }
                _ => {
                    let flow = if rng.bool() { ORDER_FLOW } else { SURVEY_FLOW };
                    json!({"flavor": "workflow", "flowId": flow, "inputs": {"Flow.OrderId": format!("o-{i}")}})
                }
            };
            if !note.is_empty() {
                if doc["flavor"] == "execute" && note == "emulator:never" {
                    doc["inputs"]["note"] = json!("emulator:slow=1500");
                } else if doc["flavor"] == "workflow" {
                    doc["inputs"]["Flow.Note"] = json!(note);
                } else {
                    doc["inputs"]["note"] = json!(note);
                }
            }
            doc["metadata"] = json!({"source": "gcrun-demo", "row": i.to_string()});
            doc
        })
        .collect()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let started = Instant::now();
    let redis = RedisServer::try_start_with(RedisOptions::default()).map_err(|e| anyhow!(e))?;
    eprintln!("demo: private redis-server on 127.0.0.1:{}", redis.port());

    // The emulator, with faults switched on.
    let emulator = gcrun_emulator::Emulator::new(EmulatorConfig {
        timings: Timings {
            queued_for: Duration::from_millis(300),
            running_for: Duration::from_millis(1_200),
            execute_for: Duration::from_millis(80),
        },
        limits: Limits {
            executions_per_window: Some(2_500),
            window: Duration::from_secs(60),
            max_concurrent: Some(40),
            requests_per_token: None,
        },
        faults: Faults {
            rate_429: 0.03,
            retry_after_secs: 1,
            rate_5xx: 0.02,
            rate_run_error: 0.05,
            ..Faults::default()
        },
        seed: args.seed,
        ..EmulatorConfig::default()
    });
    let emu_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let emu_addr = emu_listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopper = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(gcrun_emulator::serve(emu_listener, emulator.clone(), stopper(stop_rx.clone())));
    eprintln!("demo: Genesys Cloud emulator on http://{emu_addr} (3% 429s, 2% 503s, 5% transient run errors)");

    // The webhook receiver: checks signatures, refuses everything for the
    // first second and the first attempt of every fifth event, to show
    // webhook retries.
    let (secret, secret_text) = WebhookSecret::generate();
    let verify = Arc::new(move |id: &str, ts: u64, body: &[u8], sig: &str| secret.verify(id, ts, body, sig));
    let rules = SinkRules { refuse_during: Duration::from_secs(1), refuse_first_attempt_one_in: 5 };
    let sink = WebhookSink::start(verify, rules).await?;
    eprintln!("demo: webhook receiver on {} (verifies signatures; refuses at first)", sink.url);

    // The worker, configured as `gcrun worker` would be.
    let worker_args = WorkerArgs {
        redis: RedisArgs::local(redis.url()),
        region: format!("http://{emu_addr}"),
        client_id: CLIENT_ID.into(),
        client_secret: Some(CLIENT_SECRET.into()),
        client_secret_file: None,
        admin_listen: "127.0.0.1:0".into(),
        submit_concurrency: 32,
        poll_concurrency: 64,
        webhook_concurrency: 32,
        rate_per_minute: 2_400,
        rate_burst: 40,
        rate_window_ms: 60_000,
        max_concurrent: 40,
        webhook_secret: Some(secret_text),
        webhook_secret_file: None,
        default_webhook_url: Some(sink.url.parse()?),
        webhook_allowed_hosts: None,
        at_least_once: None,
        // The receiver listens on loopback.
        webhook_private_networks: true,
        slot_wait_ms: 30_000,
        max_webhook_attempts: 12,
        max_submit_attempts: 20,
        poll_base_ms: 500,
        poll_cap_ms: 4_000,
        learn_poll_timing: args.learn_poll_timing,
        webhook_inline: true,
        fetch_interval_ms: 25,
        lease_secs: 10,
        shutdown_timeout_secs: 10,
        done_retention_secs: 3_600,
        dead_job_retention_secs: 86_400,
        jitter_seed: Some(args.seed),
    };
    let worker = Worker::build(worker_args.settings()?).await?;
    let deps = worker.deps().clone();
    let (store, queues) = (deps.store().clone(), deps.queues().clone());
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let admin_addr = admin_listener.local_addr()?;
    let worker_task = tokio::spawn(worker.run(Some(admin_listener), stopper(stop_rx.clone())));
    eprintln!("demo: worker running; metrics on http://{admin_addr}/metrics");

    // Enqueue.
    // Long enough for the batch to get through the emulator's 40 slots,
    // short enough that the runs that never finish time out within the demo.
    let run_deadline = Duration::from_secs(30) + Duration::from_millis(100) * args.runs as u32;
    let producer =
        Producer::new(store.clone(), queues.clone(), ProducerConfig { run_deadline, ..ProducerConfig::default() });
    let docs = batch(args.runs, args.seed);
    let results = producer.enqueue_batch(&docs).await?;
    let ids: Vec<RunId> = results.iter().filter_map(|r| r.as_ref().ok().map(|e| e.run_id)).collect();
    let refused_at_door = results.len() - ids.len();
    eprintln!(
        "demo: enqueued {} runs ({} refused at the door); run deadline {} s\n",
        ids.len(),
        refused_at_door,
        run_deadline.as_secs()
    );

    // Live progress until every run has ended and every webhook is settled.
    let tty = std::io::stderr().is_terminal();
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut last_line = Instant::now() - Duration::from_secs(10);
    let finished = loop {
        let counts = store.counts().await?;
        let get = |s: RunStatus| counts.get(s.as_str()).copied().unwrap_or(0).max(0) as u64;
        let terminal: u64 = RunStatus::ALL.iter().filter(|s| s.is_terminal()).map(|s| get(*s)).sum();
        let mut pending_jobs = 0;
        for q in queues.names.all() {
            pending_jobs += queues.depth(q).await?.pending();
        }
        let delivered = sink.with_log(|log| log.unique_events());
        let line = format!(
            "[{:>5.1}s] accepted {} validated {} submitted {} queued {} running {} | completed {} failed {} timed_out {} rejected {} dead {} | webhooks {}",
            started.elapsed().as_secs_f64(),
            get(RunStatus::Accepted),
            get(RunStatus::Validated),
            get(RunStatus::Submitted),
            get(RunStatus::Queued),
            get(RunStatus::Running),
            get(RunStatus::Completed),
            get(RunStatus::Failed),
            get(RunStatus::TimedOut),
            get(RunStatus::Rejected),
            get(RunStatus::Dead),
            delivered,
        );
        if tty {
            eprint!("\r{line}\x1b[K");
        } else if last_line.elapsed() >= Duration::from_secs(2) {
            eprintln!("{line}");
            last_line = Instant::now();
        }
        if terminal >= ids.len() as u64 && pending_jobs == 0 {
            if tty {
                eprintln!();
            }
            break true;
        }
        if Instant::now() > deadline {
            eprintln!("\ndemo: timed out waiting for the batch");
            break false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // Summary.
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut durations: Vec<u64> = Vec::new();
    let mut retries = 0u64;
    let mut webhooks_delivered = 0usize;
    let mut dlq_reasons: BTreeMap<String, usize> = BTreeMap::new();
    for id in &ids {
        let Some(r) = store.get_run(id).await? else { continue };
        *by_status.entry(r.status.to_string()).or_default() += 1;
        if let Some(d) = r.duration_ms() {
            durations.push(d);
        }
        retries += u64::from(r.retries);
        if r.webhook.status == Some(gcrun_model::WebhookStatus::Delivered) {
            webhooks_delivered += 1;
        }
        if r.status.is_dead_lettered() {
            let reason: String = r.last_error.clone().unwrap_or_default().chars().take(90).collect();
            *dlq_reasons.entry(format!("{}: {reason}", r.status)).or_default() += 1;
        }
    }
    durations.sort_unstable();
    let (unique_events, duplicates, refused_on_purpose, bad_signature) =
        sink.with_log(|log| (log.unique_events(), log.duplicates(), log.refused, log.bad_signatures));
    let stats = emulator.stats();
    let accounted: usize = by_status.values().sum();

    println!("\n== gcrun demo summary ({:.1} s) ==", started.elapsed().as_secs_f64());
    println!("{:<28} {:>8}", "runs enqueued", ids.len());
    for (status, n) in &by_status {
        println!("  {status:<26} {n:>8}");
    }
    println!("{:<28} {:>8}", "accounted for", accounted);
    println!("{:<28} {:>8.2} s", "duration p50", percentile(&durations, 0.50));
    println!("{:<28} {:>8.2} s", "duration p95", percentile(&durations, 0.95));
    println!("{:<28} {:>8}", "retries (all stages)", retries);
    println!("{:<28} {:>8}", "webhooks delivered", webhooks_delivered);
    println!("{:<28} {:>8}", "webhooks verified (unique)", unique_events);
    println!("{:<28} {:>8}", "  refused on purpose first", refused_on_purpose);
    println!("{:<28} {:>8}", "  duplicates (same id)", duplicates);
    println!("{:<28} {:>8}", "  bad signatures", bad_signature);
    println!("{:<28} {:>8}", "emulator 429s served", stats.too_many_requests);
    println!("{:<28} {:>8}", "  of them from its limits", stats.limit_429s);
    println!("{:<28} {:>8}", "emulator peak concurrency", stats.peak_concurrency);
    println!("{:<28} {:>8}", "duplicate submissions", stats.duplicate_submissions);
    println!("dead-letter entries by reason:");
    for (reason, n) in &dlq_reasons {
        println!("  {n:>4}  {reason}");
    }
    let redis_url = redis.url();
    println!("\nlook further (with --keep, while the demo stays up):");
    println!("  gcrun runs counts --redis-url {redis_url}");
    println!("  gcrun dlq list --redis-url {redis_url} --status rejected");
    println!("  gcrun runs get --redis-url {redis_url} <run id>");
    println!("  curl -s http://{admin_addr}/metrics | grep gcrun_");
    println!("  curl -s http://{emu_addr}/emulator/stats");

    if args.keep {
        eprintln!("\ndemo: everything stays up; Ctrl-C to stop");
        crate::shutdown_signal().await;
    }
    let _ = stop_tx.send(true);
    let _ = worker_task.await;
    drop(redis);
    if !finished || accounted != ids.len() {
        bail!("not every run was accounted for ({accounted} of {})", ids.len());
    }
    Ok(())
}
