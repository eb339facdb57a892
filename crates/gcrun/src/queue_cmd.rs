//! `gcrun enqueue`, `gcrun ingest`, `gcrun runs`, `gcrun dlq`: the
//! producer and operator side.

use std::io::BufRead;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use gcrun_model::{Flavor, RunId, RunStatus};
use gcrun_producer::ingest::{IngestClient, IngestConfig};
use gcrun_producer::operator::{Operator, Selection};
use gcrun_producer::{Producer, ProducerConfig, ProducerError, now_ms};
use gcrun_store::DlqFilter;
use serde_json::{Map, Value, json};

use crate::worker_cmd::RedisArgs;

fn producer_config(deadline_secs: u64, webhook_private_networks: bool) -> ProducerConfig {
    let limits =
        gcrun_model::RequestLimits { webhook_private_addresses: webhook_private_networks, ..Default::default() };
    ProducerConfig { run_deadline: Duration::from_secs(deadline_secs), limits, ..ProducerConfig::default() }
}

#[derive(Args, Debug)]
pub struct EnqueueArgs {
    #[command(flatten)]
    redis: RedisArgs,
    /// Accept webhook URLs that name loopback, private or link-local
    /// addresses (receivers inside your network; the worker must allow them too).
    #[arg(long, env = "GCRUN_WEBHOOK_PRIVATE_NETWORKS", default_value_t = false, action = clap::ArgAction::Set)]
    webhook_private_networks: bool,
    /// runs, execute or workflow (for a run given by flags).
    #[arg(long)]
    flavor: Option<Flavor>,
    /// Action id (runs, execute) or flow id (workflow).
    #[arg(long)]
    target: Option<String>,
    /// A string input, NAME=VALUE.
    #[arg(long = "input", short = 'i')]
    inputs: Vec<String>,
    /// A typed input, NAME=JSON.
    #[arg(long = "json-input", short = 'j')]
    json_inputs: Vec<String>,
    #[arg(long)]
    webhook_url: Option<String>,
    #[arg(long)]
    run_name: Option<String>,
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Metadata, KEY=VALUE.
    #[arg(long = "meta")]
    metadata: Vec<String>,
    /// A JSON file holding one run request.
    #[arg(long, conflicts_with_all = ["flavor", "stdin"])]
    file: Option<std::path::PathBuf>,
    /// Read many run requests as JSON Lines from standard input.
    #[arg(long)]
    stdin: bool,
    /// Print JSON results (one per line) for scripts.
    #[arg(long)]
    json: bool,
    /// Seconds a run may take before it is timed out.
    #[arg(long, env = "GCRUN_RUN_DEADLINE_SECS", default_value_t = 3_600)]
    deadline_secs: u64,
}

fn split_pair(s: &str) -> Result<(String, String)> {
    let (k, v) = s.split_once('=').with_context(|| format!("`{s}` is not NAME=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

impl EnqueueArgs {
    fn flags_document(&self) -> Result<Value> {
        let flavor = self.flavor.context("give --flavor and --target, or --file, or --stdin")?;
        let target = self.target.clone().context("--target is required with --flavor")?;
        let mut inputs = Map::new();
        for i in &self.inputs {
            let (k, v) = split_pair(i)?;
            inputs.insert(k, Value::String(v));
        }
        for j in &self.json_inputs {
            let (k, v) = split_pair(j)?;
            inputs.insert(k, serde_json::from_str(&v).with_context(|| format!("--json-input {j}: not JSON"))?);
        }
        let mut doc = json!({"flavor": flavor, "inputs": inputs});
        doc[if flavor.targets_action() { "actionId" } else { "flowId" }] = json!(target);
        for (key, value) in
            [("webhookUrl", &self.webhook_url), ("runName", &self.run_name), ("idempotencyKey", &self.idempotency_key)]
        {
            if let Some(v) = value {
                doc[key] = json!(v);
            }
        }
        if !self.metadata.is_empty() {
            let meta: Result<Map<String, Value>> =
                self.metadata.iter().map(|m| split_pair(m).map(|(k, v)| (k, Value::String(v)))).collect();
            doc["metadata"] = Value::Object(meta?);
        }
        Ok(doc)
    }
}

pub async fn enqueue(args: EnqueueArgs) -> Result<()> {
    let (store, queues) = args.redis.open().await?;
    let producer = Producer::new(store, queues, producer_config(args.deadline_secs, args.webhook_private_networks));
    if args.stdin {
        return enqueue_lines(&producer, args.json).await;
    }
    let doc = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?
        }
        None => args.flags_document()?,
    };
    match producer.enqueue_value(&doc).await {
        Ok(e) if args.json => println!("{}", json!({"runId": e.run_id, "existing": e.existing})),
        Ok(e) => println!("{}{}", e.run_id, if e.existing { " (existing run for this idempotency key)" } else { "" }),
        Err(ProducerError::Invalid(v)) => {
            if args.json {
                println!("{}", json!({"error": "invalid_request", "violations": v}));
            }
            for violation in v.iter() {
                eprintln!("invalid: {violation}");
            }
            std::process::exit(2);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// JSON Lines from stdin, enqueued in batches of 200, with a progress bar.
async fn enqueue_lines(producer: &Producer, json_out: bool) -> Result<()> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} lines read, {msg} [{elapsed}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let (mut accepted, mut rejected) = (0usize, 0usize);
    let mut batch: Vec<(usize, Value)> = Vec::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines().enumerate();
    loop {
        let next = lines.next();
        let done = next.is_none();
        if let Some((n, line)) = next {
            let line = line.context("reading standard input")?;
            bar.inc(1);
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(&line) {
                Ok(doc) => batch.push((n + 1, doc)),
                Err(e) => {
                    rejected += 1;
                    report(json_out, n + 1, Err(format!("not JSON: {e}")));
                }
            }
        }
        if batch.len() >= 200 || (done && !batch.is_empty()) {
            let docs: Vec<Value> = batch.iter().map(|(_, d)| d.clone()).collect();
            let results = producer.enqueue_batch(&docs).await?;
            for ((line, _), r) in batch.drain(..).zip(results) {
                match r {
                    Ok(e) => {
                        accepted += 1;
                        report(json_out, line, Ok(e.run_id));
                    }
                    Err(v) => {
                        rejected += 1;
                        report(json_out, line, Err(v.to_string()));
                    }
                }
            }
            bar.set_message(format!("{accepted} accepted, {rejected} rejected"));
        }
        if done {
            break;
        }
    }
    bar.finish_and_clear();
    eprintln!("{accepted} accepted, {rejected} rejected");
    if rejected > 0 {
        std::process::exit(2);
    }
    Ok(())
}

fn report(json_out: bool, line: usize, r: Result<RunId, String>) {
    match (json_out, r) {
        (true, Ok(id)) => println!("{}", json!({"line": line, "runId": id})),
        (true, Err(e)) => println!("{}", json!({"line": line, "error": e})),
        (false, Ok(id)) => println!("{id}"),
        (false, Err(e)) => eprintln!("line {line}: {e}"),
    }
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    #[command(flatten)]
    redis: RedisArgs,
    /// Accept webhook URLs that name loopback, private or link-local
    /// addresses (receivers inside your network; the worker must allow them too).
    #[arg(long, env = "GCRUN_WEBHOOK_PRIVATE_NETWORKS", default_value_t = false, action = clap::ArgAction::Set)]
    webhook_private_networks: bool,
    #[arg(long, env = "GCRUN_INGEST_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// The clients, comma-separated `name=token` (a bare token is client
    /// `client<n>`). Each reads only its own runs and has its own
    /// idempotency keys and rate. Required.
    #[arg(long, env = "GCRUN_INGEST_TOKENS", value_delimiter = ',', hide_env_values = true, required = true)]
    tokens: Vec<String>,
    /// Largest request body in bytes.
    #[arg(long, env = "GCRUN_INGEST_BODY_LIMIT", default_value_t = 8 * 1024 * 1024)]
    body_limit: usize,
    /// Requests a minute each client may make to this process (burst a
    /// tenth of it); 0: no limit.
    #[arg(long, env = "GCRUN_INGEST_RATE_PER_MINUTE", default_value_t = 6_000)]
    rate_per_minute: u32,
    /// Longest a request may take to arrive and be answered, in seconds.
    #[arg(long, env = "GCRUN_INGEST_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    request_timeout_secs: u64,
    #[arg(long, env = "GCRUN_RUN_DEADLINE_SECS", default_value_t = 3_600)]
    deadline_secs: u64,
}

pub async fn ingest(args: IngestArgs) -> Result<()> {
    let (store, queues) = args.redis.open().await?;
    let producer = Producer::new(store, queues, producer_config(args.deadline_secs, args.webhook_private_networks));
    let clients = args
        .tokens
        .iter()
        .filter(|t| !t.trim().is_empty())
        .enumerate()
        .map(|(i, t)| IngestClient::parse(t, i + 1))
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| anyhow::anyhow!("GCRUN_INGEST_TOKENS: {e}"))?;
    if clients.is_empty() {
        bail!("GCRUN_INGEST_TOKENS holds no token");
    }
    let mut names: Vec<&str> = clients.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        bail!("GCRUN_INGEST_TOKENS names client {} twice", w[0]);
    }
    let listener =
        tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    println!("gcrun ingest listening on http://{}", listener.local_addr()?);
    gcrun_producer::ingest::serve(
        listener,
        producer,
        IngestConfig {
            clients,
            body_limit: args.body_limit,
            rate_per_minute: args.rate_per_minute,
            request_timeout: std::time::Duration::from_secs(args.request_timeout_secs.max(1)),
        },
        crate::shutdown_signal(),
    )
    .await?;
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum RunsCommand {
    /// Show a run's record with its transitions, as JSON.
    Get {
        #[command(flatten)]
        redis: RedisArgs,
        run_id: RunId,
    },
    /// Runs per status.
    Counts {
        #[command(flatten)]
        redis: RedisArgs,
    },
}

pub async fn runs(cmd: RunsCommand) -> Result<()> {
    match cmd {
        RunsCommand::Get { redis, run_id } => {
            let (store, _) = redis.open().await?;
            let record =
                store.get_run_with_history(&run_id).await?.with_context(|| format!("run {run_id} not found"))?;
            println!("{}", serde_json::to_string_pretty(&gcrun_store::RunView::from(&record))?);
        }
        RunsCommand::Counts { redis } => {
            let (store, queues) = redis.open().await?;
            let mut counts: Vec<(String, i64)> = store.counts().await?.into_iter().collect();
            counts.sort();
            for (status, n) in counts {
                println!("{status:<12} {n}");
            }
            for q in queues.names.all() {
                let d = queues.depth(q).await?;
                println!(
                    "{q:<18} ready {} scheduled {} in-flight {} dead {}",
                    d.ready, d.scheduled, d.in_flight, d.dead
                );
            }
        }
    }
    Ok(())
}

/// Filters shared by the dead-letter commands.
#[derive(Args, Debug, Clone)]
pub struct DlqFilterArgs {
    /// rejected or dead.
    #[arg(long)]
    status: Option<RunStatus>,
    #[arg(long)]
    flavor: Option<Flavor>,
    /// Action or flow id.
    #[arg(long)]
    target: Option<String>,
    /// Substring of the stored reason (case-insensitive).
    #[arg(long)]
    reason: Option<String>,
    /// Only entries dead-lettered in the last N seconds.
    #[arg(long)]
    since_secs: Option<u64>,
    #[arg(long)]
    limit: Option<usize>,
}

impl DlqFilterArgs {
    fn filter(&self) -> DlqFilter {
        DlqFilter {
            status: self.status,
            flavor: self.flavor,
            target: self.target.clone(),
            reason_contains: self.reason.clone(),
            since_ms: self.since_secs.map(|s| now_ms().saturating_sub(s * 1000)),
            limit: self.limit,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum DlqCommand {
    /// List dead-lettered runs with their reasons.
    List {
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        filter: DlqFilterArgs,
        #[arg(long)]
        json: bool,
    },
    /// Put matching runs back to `accepted` and enqueue them again. A run
    /// that was submitted before resumes polling; it is not submitted twice.
    Requeue {
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// Requeue exactly these runs (ignores the filter).
        #[arg(long = "run")]
        runs: Vec<RunId>,
    },
    /// Delete matching runs for good.
    Purge {
        #[command(flatten)]
        redis: RedisArgs,
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// Required: purging is not undoable.
        #[arg(long)]
        yes: bool,
    },
    /// Webhooks that could not be delivered; `--requeue` sends them again.
    Webhooks {
        #[command(flatten)]
        redis: RedisArgs,
        #[arg(long)]
        requeue: bool,
    },
    /// Jobs in the queues' own dead sets (malformed jobs, poison jobs),
    /// oldest first, a page at a time; `--requeue` runs the page again
    /// under fresh ids, `--purge --yes` drops it (each re-checked as still
    /// dead when it is acted on).
    Jobs {
        #[command(flatten)]
        redis: RedisArgs,
        /// Only this queue (submit, poll or webhook).
        #[arg(long)]
        queue: Option<String>,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, conflicts_with = "purge")]
        requeue: bool,
        #[arg(long)]
        purge: bool,
        /// Confirms a purge.
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
}

pub async fn dlq(cmd: DlqCommand) -> Result<()> {
    let now = now_ms();
    match cmd {
        DlqCommand::List { redis, filter, json } => {
            let (store, _) = redis.open().await?;
            let list = store.dlq_list(&filter.filter()).await?;
            for r in &list {
                if json {
                    println!("{}", serde_json::to_string(&gcrun_store::RunView::from(r))?);
                } else {
                    println!(
                        "{}  {:<8} {:<8} {}  {}",
                        r.id,
                        r.status,
                        r.flavor,
                        r.target,
                        r.last_error.as_deref().unwrap_or("-")
                    );
                }
            }
            let unreadable = store.dlq_unreadable().await?;
            for (id, reason) in &unreadable {
                if json {
                    println!("{}", json!({"runId": id, "unreadable": true, "lastError": reason}));
                } else {
                    println!("{id}  unreadable record  {reason}");
                }
            }
            if !json {
                eprintln!("{} run(s) in the dead-letter set match", list.len());
                if !unreadable.is_empty() {
                    eprintln!("{} run(s) there have a record that can no longer be read", unreadable.len());
                }
            }
        }
        DlqCommand::Requeue { redis, filter, runs } => {
            let (store, queues) = redis.open().await?;
            let selection = if runs.is_empty() { Selection::Matching(filter.filter()) } else { Selection::Runs(runs) };
            let requeued = Operator::new(store, queues).requeue_runs(&selection, now).await?;
            for r in &requeued {
                println!("requeued {}", r.id);
            }
            eprintln!("{} run(s) requeued", requeued.len());
        }
        DlqCommand::Purge { redis, filter, yes } => {
            if !yes {
                bail!("purge deletes runs for good: add --yes");
            }
            let (store, queues) = redis.open().await?;
            let n = Operator::new(store, queues).purge(&filter.filter()).await?;
            eprintln!("{n} run(s) purged");
        }
        DlqCommand::Webhooks { redis, requeue } => {
            let (store, queues) = redis.open().await?;
            let operator = Operator::new(store, queues);
            let dead = operator.dead_webhooks().await?;
            if requeue {
                let ids: Vec<RunId> = dead.iter().map(|(id, _)| *id).collect();
                for id in operator.requeue_webhooks(&ids).await? {
                    println!("requeued webhook of {id}");
                }
            } else {
                for (id, reason) in dead {
                    println!("{id}  {reason}");
                }
            }
        }
        DlqCommand::Jobs { redis, queue, offset, limit, requeue, purge, yes, json } => {
            if purge && !yes {
                anyhow::bail!("--purge drops dead jobs for good: add --yes to confirm");
            }
            let (_, queues) = redis.open().await?;
            let names: Vec<String> = match queue {
                Some(q) if queues.names.all().contains(&q.as_str()) => vec![q],
                Some(q) => anyhow::bail!("no queue named `{q}` (submit, poll or webhook)"),
                None => queues.names.all().iter().map(|q| q.to_string()).collect(),
            };
            for q in &names {
                let page = queues.dead_jobs(q, offset, limit).await?;
                let ids: Vec<String> = page.iter().map(|j| j.id.clone()).collect();
                if requeue {
                    println!("{q}: requeued {} of {} listed", queues.requeue_dead(q, &ids).await?, ids.len());
                } else if purge {
                    println!("{q}: purged {} of {} listed", queues.purge_dead(q, &ids).await?, ids.len());
                } else if json {
                    for job in page {
                        println!("{}", serde_json::json!({ "queue": q, "job": job }));
                    }
                } else {
                    for job in page {
                        println!(
                            "{q} {}  died={}  payload={}  reason={}",
                            job.id,
                            gcrun_model::timestamp::rfc3339_ms(job.died_ms),
                            job.payload.unwrap_or_default(),
                            job.reason.unwrap_or_default()
                        );
                    }
                }
            }
        }
    }
    Ok(())
}
