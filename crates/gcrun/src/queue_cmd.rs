//! `gcrun enqueue`, `gcrun ingest`: the producer side (the operator side
//! is `ops_cmd`).

use std::io::BufRead;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use gcrun_model::{Flavor, RunId};
use gcrun_producer::ingest::IngestConfig;
use gcrun_producer::{Producer, ProducerConfig, ProducerError};
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

/// Lines of standard input, numbered from 1: a JSON document, or why not.
type Lines = Vec<(usize, Result<Value, String>)>;

/// Runs a batch holds (the producer's most per call).
const LINES_PER_BATCH: usize = 1_000;
/// Batches in flight to Redis at once: reading and parsing the next ones
/// overlaps Redis running the scripts of the last ones.
const BATCHES_IN_FLIGHT: usize = 4;

/// JSON Lines from stdin, enqueued in batches of 1,000, several batches in
/// flight at once, each one pipeline; results are reported in line order,
/// with a progress bar on stderr.
async fn enqueue_lines(producer: &Producer, json_out: bool) -> Result<()> {
    use futures_util::StreamExt;
    use std::io::Write;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {pos} lines enqueued, {msg} [{elapsed}]")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    // Reading and parsing happen on their own thread, ahead of Redis.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Lines>>(BATCHES_IN_FLIGHT);
    std::thread::spawn(move || {
        let mut batch = Vec::with_capacity(LINES_PER_BATCH);
        for (n, line) in std::io::stdin().lock().lines().enumerate() {
            let line = match line {
                Ok(line) => line,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            batch.push((n + 1, serde_json::from_str::<Value>(&line).map_err(|e| format!("not JSON: {e}"))));
            if batch.len() == LINES_PER_BATCH && tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                return;
            }
        }
        if !batch.is_empty() {
            let _ = tx.blocking_send(Ok(batch));
        }
    });
    let enqueue = |lines: Lines| async move {
        let docs: Vec<Value> = lines.iter().filter_map(|(_, d)| d.as_ref().ok().cloned()).collect();
        let results = producer.enqueue_batch(&docs).await;
        (lines, results)
    };
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let (mut accepted, mut rejected) = (0usize, 0usize);
    let mut in_flight = futures_util::stream::FuturesOrdered::new();
    let mut input_open = true;
    // A batch that failed (Redis went away, say) stops the reading, but the
    // batches already in flight are still answered line by line: a run that
    // was enqueued is always reported, so a second attempt can leave it out.
    let mut failed: Option<anyhow::Error> = None;
    while input_open || !in_flight.is_empty() {
        tokio::select! {
            next = rx.recv(), if input_open && failed.is_none() && in_flight.len() < BATCHES_IN_FLIGHT => match next {
                Some(Ok(lines)) => in_flight.push_back(enqueue(lines)),
                Some(Err(e)) => {
                    failed = Some(anyhow::Error::from(e).context("reading standard input"));
                    input_open = false;
                }
                None => input_open = false,
            },
            Some((lines, results)) = in_flight.next() => {
                let (mut results, batch_error) = match results {
                    Ok(results) => (results.into_iter(), None),
                    Err(e) => (Vec::new().into_iter(), Some(e.to_string())),
                };
                if let Some(e) = &batch_error {
                    input_open = false;
                    failed.get_or_insert_with(|| anyhow::anyhow!("enqueueing a batch failed: {e}"));
                }
                for (line, doc) in lines {
                    let r = match (doc, &batch_error) {
                        (Err(why), _) => Err(why),
                        // The batch's scripts may have run in part: check
                        // `gcrun runs list` before sending these lines again.
                        (Ok(_), Some(e)) => Err(format!("not known to be enqueued (the batch failed: {e})")),
                        (Ok(_), None) => match results.next() {
                            Some(Ok(e)) => Ok(e.run_id),
                            Some(Err(v)) => Err(v.to_string()),
                            None => Err("no result from the producer".to_string()),
                        },
                    };
                    if r.is_ok() { accepted += 1 } else { rejected += 1 }
                    report(&mut out, json_out, line, r)?;
                    bar.inc(1);
                }
                bar.set_message(format!("{accepted} accepted, {rejected} rejected"));
            }
        }
    }
    out.flush()?;
    bar.finish_and_clear();
    eprintln!("{accepted} accepted, {rejected} rejected");
    if let Some(e) = failed {
        return Err(e);
    }
    if rejected > 0 {
        std::process::exit(2);
    }
    Ok(())
}

fn report(out: &mut impl std::io::Write, json_out: bool, line: usize, r: Result<RunId, String>) -> Result<()> {
    match (json_out, r) {
        (true, Ok(id)) => writeln!(out, "{}", json!({"line": line, "runId": id}))?,
        (true, Err(e)) => writeln!(out, "{}", json!({"line": line, "error": e}))?,
        (false, Ok(id)) => writeln!(out, "{id}")?,
        (false, Err(e)) => eprintln!("line {line}: {e}"),
    }
    Ok(())
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
    #[arg(long, env = "GCRUN_INGEST_TOKENS", hide_env_values = true)]
    tokens: Option<String>,
    /// A file holding the clients (as GCRUN_INGEST_TOKENS), read again when
    /// it changes: tokens rotate with no restart.
    #[arg(long, env = "GCRUN_INGEST_TOKENS_FILE", conflicts_with = "tokens")]
    tokens_file: Option<std::path::PathBuf>,
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
    /// Operators of the dashboard at /ops, comma-separated `name=token`
    /// (at least 16 characters each, none an ingest client's token). Unset:
    /// no dashboard.
    #[arg(long, env = "GCRUN_OPERATOR_TOKENS", hide_env_values = true)]
    operator_tokens: Option<String>,
    /// A file holding the operators (as GCRUN_OPERATOR_TOKENS), read again
    /// when it changes.
    #[arg(long, env = "GCRUN_OPERATOR_TOKENS_FILE", conflicts_with = "operator_tokens")]
    operator_tokens_file: Option<std::path::PathBuf>,
    /// Hours a dashboard sign-in lasts.
    #[arg(long, env = "GCRUN_DASHBOARD_SESSION_HOURS", default_value_t = 8)]
    dashboard_session_hours: u64,
    /// Mark the dashboard's cookie `Secure` (users reach ingest over HTTPS).
    #[arg(long, env = "GCRUN_DASHBOARD_SECURE_COOKIE", default_value_t = false, action = clap::ArgAction::Set)]
    dashboard_secure_cookie: bool,
    /// The tenants the dashboard shows, comma-separated, the first at
    /// sign-in. Unset: every tenant an ingest client is bound to.
    #[arg(long, env = "GCRUN_DASHBOARD_TENANTS", value_delimiter = ',')]
    dashboard_tenants: Vec<gcrun_model::Tenant>,
}

pub async fn ingest(args: IngestArgs) -> Result<()> {
    let (store, queues) = args.redis.open().await?;
    let producer = Producer::new(store, queues, producer_config(args.deadline_secs, args.webhook_private_networks));
    use gcrun_genesys::SecretSource;
    use gcrun_secrets::Parsed;
    // From a file: read again when it changes (tokens rotate with no
    // restart); the list as it is now is checked at start.
    let (clients, clients_from) = match (&args.tokens, &args.tokens_file) {
        (_, Some(path)) => {
            let file = Parsed::new(SecretSource::file(path)?, gcrun_producer::ingest::parse_clients)
                .map_err(|e| anyhow::anyhow!("GCRUN_INGEST_TOKENS_FILE: {e}"))?;
            ((*file.current().map_err(anyhow::Error::msg)?).clone(), Some(std::sync::Arc::new(file)))
        }
        (Some(text), None) => (
            gcrun_producer::ingest::parse_clients(text).map_err(|e| anyhow::anyhow!("GCRUN_INGEST_TOKENS: {e}"))?,
            None,
        ),
        (None, None) => bail!("GCRUN_INGEST_TOKENS or GCRUN_INGEST_TOKENS_FILE is required"),
    };
    let (operators, operators_from) = match (&args.operator_tokens, &args.operator_tokens_file) {
        (_, Some(path)) => {
            let file = Parsed::new(SecretSource::file(path)?, gcrun_dashboard::parse_operators)
                .map_err(|e| anyhow::anyhow!("GCRUN_OPERATOR_TOKENS_FILE: {e}"))?;
            ((*file.current().map_err(anyhow::Error::msg)?).clone(), Some(std::sync::Arc::new(file)))
        }
        (Some(text), None) if !text.trim().is_empty() => {
            (gcrun_dashboard::parse_operators(text).map_err(|e| anyhow::anyhow!("GCRUN_OPERATOR_TOKENS: {e}"))?, None)
        }
        _ => (Vec::new(), None),
    };
    let request_timeout = std::time::Duration::from_secs(args.request_timeout_secs.max(1));
    let client_tokens = clients.iter().map(|c| c.token.clone()).collect();
    // A client bound to no tenant uses this ingest's own.
    let own = args.redis.tenant.clone();
    let clients_tenants: Vec<gcrun_model::Tenant> =
        clients.iter().flat_map(|c| if c.tenants.is_empty() { vec![own.clone()] } else { c.tenants.clone() }).collect();
    let operator = gcrun_producer::operator::Operator::new(producer.store().clone(), producer.queues().clone());
    let mut app = gcrun_producer::ingest::router(
        producer,
        IngestConfig {
            clients,
            clients_from,
            body_limit: args.body_limit,
            rate_per_minute: args.rate_per_minute,
            request_timeout,
        },
    );
    let dashboard = !operators.is_empty();
    let mut tenants = args.dashboard_tenants.clone();
    if tenants.is_empty() {
        for t in clients_tenants {
            if !tenants.contains(&t) {
                tenants.push(t);
            }
        }
    }
    if dashboard {
        let config = gcrun_dashboard::DashboardConfig {
            operators,
            operators_from,
            session_ttl: std::time::Duration::from_secs(args.dashboard_session_hours.max(1) * 3600),
            secure_cookie: args.dashboard_secure_cookie,
            client_tokens,
            tenants,
        };
        app = app.merge(gcrun_dashboard::router(operator, config).context("GCRUN_OPERATOR_TOKENS")?);
    }
    let listener =
        tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("gcrun ingest listening on http://{addr}");
    if dashboard {
        tracing::info!("operators' dashboard at http://{addr}/ops");
    }
    gcrun_producer::ingest::serve_app(listener, app, request_timeout, crate::shutdown_signal()).await?;
    Ok(())
}
