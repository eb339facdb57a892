//! `gcrun`: a thin clap front over gcrun's crates. Each subcommand parses
//! its arguments, builds a config and calls a library function; nothing
//! here holds logic worth testing on its own.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

mod bench;
mod bench_ops;
mod bench_procs;
mod config_file;
mod demo;
mod genesys_cmd;
mod ops_cmd;
mod queue_cmd;
mod worker_cmd;

/// mimalloc instead of the system allocator: a worker's profile spent a
/// fifth of its CPU in glibc's malloc and free (small, short-lived
/// allocations across threads: records, arguments, HTTP buffers).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "gcrun", version, about = "Run Genesys Cloud data actions durably, at scale")]
struct Cli {
    /// Settings file (keys are the environment names, e.g. REDIS_URL);
    /// flags and the environment override it. Default: $GCRUN_CONFIG, else
    /// ./gcrun.toml when it exists.
    #[arg(long, global = true)]
    config: Option<std::path::PathBuf>,
    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(long, env = "GCRUN_LOG_FORMAT", default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the Genesys Cloud emulator (OAuth, actions, runs, execute,
    /// workflows, fault injection, stats) for offline testing.
    Emulator(EmulatorArgs),
    /// Read action definitions from Genesys Cloud (or the emulator).
    #[command(subcommand)]
    Actions(genesys_cmd::ActionsCommand),
    /// Run one action or flow right now, in this process, and print the
    /// outcome: a quick check of credentials, region and contract. (Durable,
    /// queued runs go through the worker.)
    RunNow(genesys_cmd::RunNowArgs),
    /// Run the worker: submit, poll and webhook queues, admin server.
    Worker(Box<worker_cmd::WorkerArgs>),
    /// Enqueue runs from flags, a JSON file, or JSON Lines on stdin.
    Enqueue(Box<queue_cmd::EnqueueArgs>),
    /// Serve the HTTP ingest API (POST /v1/runs, ...).
    Ingest(queue_cmd::IngestArgs),
    /// Inspect runs: get, list, tail, counts.
    #[command(subcommand)]
    Runs(ops_cmd::RunsCommand),
    /// Inspect, requeue and purge the dead-letter set.
    #[command(subcommand)]
    Dlq(ops_cmd::DlqCommand),
    /// Where gcrun stands: queue depth, recent outcomes, limiters, retention.
    Stats(ops_cmd::StatsArgs),
    /// The audit trail of every transition.
    #[command(subcommand)]
    Audit(ops_cmd::AuditCommand),
    /// Pause a queue, a flavor or one action (`gcrun pause action <id>
    /// --reason-text "Genesys is down"`). Nothing is lost.
    Pause(ops_cmd::PauseArgs),
    /// Resume what `pause` paused; held runs go on.
    Resume(ops_cmd::PauseArgs),
    /// The pauses standing now, and the runs they parked.
    Pauses(ops_cmd::PausesArgs),
    /// Exit 0 when URL answers 2xx within 2 s: the container image's
    /// HEALTHCHECK (the image has no shell or curl).
    Probe {
        /// e.g. http://127.0.0.1:9464/healthz
        url: String,
    },
    /// Check inputs against an action's live contract; run nothing.
    Check(genesys_cmd::CheckArgs),
    /// The main job, end to end, on a private Redis and the emulator:
    /// a mixed batch with faults, live progress, a summary. About a minute.
    Demo(demo::DemoArgs),
    /// Measure on this machine (private Redis, the emulator at zero
    /// latency); prints one JSON line per scenario.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(Args, Debug)]
struct EmulatorArgs {
    /// Address to listen on. Port 0 picks a free port; the chosen address
    /// is printed on the first line of standard output.
    #[arg(long, env = "GCRUN_EMULATOR_LISTEN", default_value = "127.0.0.1:8089")]
    listen: String,
    /// Fixture file (clients, actions, flows); the shipped demo set by default.
    #[arg(long, env = "GCRUN_EMULATOR_FIXTURES")]
    fixtures: Option<std::path::PathBuf>,
    /// Lifetime of issued tokens, in seconds.
    #[arg(long, default_value_t = 86_400)]
    token_ttl_secs: u64,
    /// How long a run stays queued, in milliseconds.
    #[arg(long, default_value_t = 200)]
    queued_ms: u64,
    /// How long a run runs, in milliseconds.
    #[arg(long, default_value_t = 800)]
    running_ms: u64,
    /// How long a synchronous execute call takes, in milliseconds.
    #[arg(long, default_value_t = 50)]
    execute_ms: u64,
    /// Executions allowed per window (0: unlimited).
    #[arg(long, default_value_t = 2_500)]
    rate_limit: u32,
    /// Rate window in milliseconds (a minute, as in Genesys Cloud).
    #[arg(long, default_value_t = 60_000)]
    rate_window_ms: u64,
    /// Runs in progress at once (0: unlimited).
    #[arg(long, default_value_t = 50)]
    max_concurrent: u32,
    /// Platform API requests per token per window (0: unlimited).
    #[arg(long, default_value_t = 0)]
    requests_per_token: u32,
    /// Faults as JSON, the body `PUT /emulator/faults` takes, e.g.
    /// '{"rate429":0.05,"rate5xx":0.02,"rateRunError":0.1}'.
    #[arg(long, default_value = "{}")]
    faults: String,
    /// Seed of the fault dice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Runs the command; a failure prints one line and exits with the code it
/// means (see `ops_cmd`: 1 unless the command says otherwise).
fn main() {
    if let Err(e) = try_main() {
        let code = e.downcast_ref::<ops_cmd::Exit>().map_or(1, |x| x.code);
        eprintln!("Error: {e:#}");
        std::process::exit(code);
    }
}

fn try_main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mut command = Cli::command();
    if let Some(path) = config_file::locate(&args) {
        let values = config_file::load(&path)?;
        command = config_file::apply(command, &values)?;
    }
    let cli = Cli::from_arg_matches(&command.get_matches_from(&args)).unwrap_or_else(|e| e.exit());
    // The demo prints its own progress; its logs would drown it.
    let default_level = if matches!(cli.command, Command::Demo(_) | Command::Bench(_) | Command::Probe { .. }) {
        "warn"
    } else {
        "info"
    };
    init_tracing(cli.log_format, default_level);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Emulator(args) => emulator(args).await,
            Command::Actions(cmd) => genesys_cmd::actions(cmd).await,
            Command::RunNow(args) => genesys_cmd::run_now(args).await,
            Command::Worker(args) => worker_cmd::run(*args).await,
            Command::Enqueue(args) => queue_cmd::enqueue(*args).await,
            Command::Ingest(args) => queue_cmd::ingest(args).await,
            Command::Runs(cmd) => ops_cmd::runs(cmd).await,
            Command::Dlq(cmd) => ops_cmd::dlq(cmd).await,
            Command::Stats(args) => ops_cmd::stats(args).await,
            Command::Audit(cmd) => ops_cmd::audit(cmd).await,
            Command::Check(args) => genesys_cmd::check(args).await,
            Command::Probe { url } => probe(&url).await,
            Command::Pause(args) => ops_cmd::pause(args, false).await,
            Command::Resume(args) => ops_cmd::pause(args, true).await,
            Command::Pauses(args) => ops_cmd::pauses(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Bench(cmd) => bench::run(cmd).await,
        }
    })
}

fn init_tracing(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GCRUN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn emulator(args: EmulatorArgs) -> Result<()> {
    use gcrun_emulator::{EmulatorConfig, Faults, Fixtures, Limits, Timings};
    let fixtures = match &args.fixtures {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Fixtures::from_json(&text).with_context(|| format!("loading {}", path.display()))?
        }
        None => Fixtures::demo(),
    };
    let faults: Faults = serde_json::from_str(&args.faults).context("--faults is not valid fault JSON")?;
    faults.validate().map_err(anyhow::Error::msg).context("--faults")?;
    let nonzero = |n: u32| (n > 0).then_some(n);
    let config = EmulatorConfig {
        fixtures,
        token_ttl: Duration::from_secs(args.token_ttl_secs),
        timings: Timings {
            queued_for: Duration::from_millis(args.queued_ms),
            running_for: Duration::from_millis(args.running_ms),
            execute_for: Duration::from_millis(args.execute_ms),
        },
        limits: Limits {
            executions_per_window: nonzero(args.rate_limit),
            window: Duration::from_millis(args.rate_window_ms.max(1)),
            max_concurrent: nonzero(args.max_concurrent),
            requests_per_token: nonzero(args.requests_per_token),
        },
        faults,
        seed: args.seed,
    };
    let clients: Vec<String> = config.fixtures.clients.iter().map(|c| c.client_id.clone()).collect();
    let listener =
        tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    // The first stdout line is for scripts and tests that bind port 0.
    println!("gcrun emulator listening on http://{addr}");
    tracing::info!(%addr, ?clients, "emulator ready; admin API under /emulator/ (stats, faults, tokens/revoke)");
    gcrun_emulator::serve(listener, gcrun_emulator::Emulator::new(config), shutdown_signal()).await?;
    tracing::info!("emulator stopped");
    Ok(())
}

async fn probe(url: &str) -> Result<()> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let status = client.get(url).send().await.with_context(|| format!("probing {url}"))?.status();
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
