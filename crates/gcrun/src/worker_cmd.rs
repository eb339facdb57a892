//! `gcrun worker`: its settings from flags and the environment. The
//! worker itself is assembled by `gcrun_worker::Worker::build`, the one
//! composition root (the demo and the tests use it too).

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use gcrun_genesys::{ClientConfig, Credentials, Environment, SecretSource};
use gcrun_model::RetrySchedule;
use gcrun_queue::{QueueSettings, Queues};
use gcrun_store::{LimiterConfig, Store, StoreConfig};
use gcrun_worker::webhook::WebhookKeys;
use gcrun_worker::{GenesysSettings, RunSettings, Worker, WorkerConfig, WorkerSettings};

/// Where Redis is.
#[derive(Args, Debug, Clone)]
pub struct RedisArgs {
    /// redis:// or rediss:// URL (credentials allowed; never logged).
    #[arg(long = "redis-url", env = "REDIS_URL", default_value = "redis://127.0.0.1:6379/", hide_env_values = true)]
    pub url: String,
    /// A PEM file of the CA(s) that sign the Redis server's certificate,
    /// trusted instead of the system's store (`rediss://` with a private CA).
    #[arg(long = "redis-ca-file", env = "GCRUN_REDIS_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// The tenant (one Genesys org's runs, queues and limiter, under a hash
    /// tag of their own) this command works on. `default` is the
    /// single-org layout of earlier releases.
    #[arg(long, env = "GCRUN_TENANT", default_value = "default")]
    pub tenant: gcrun_model::Tenant,
    /// How long a completed, failed or timed-out run's record is kept once
    /// it ends, in seconds; then it is gone, counts and indexes with it.
    #[arg(long, env = "GCRUN_RUN_RETENTION_SECS", default_value_t = 7 * 86_400)]
    pub run_retention_secs: u64,
    /// How long a dead-lettered (rejected, dead) run's record is kept, in
    /// seconds: the time operators have to look at it and requeue it.
    #[arg(long, env = "GCRUN_DEAD_RUN_RETENTION_SECS", default_value_t = 30 * 86_400)]
    pub dead_run_retention_secs: u64,
    /// About how many transitions the audit stream keeps (oldest dropped).
    #[arg(long, env = "GCRUN_AUDIT_CAP", default_value_t = 1_000_000)]
    pub audit_cap: u64,
}

impl RedisArgs {
    /// Redis at `url`, everything else as the defaults (the demo, the bench).
    pub fn local(url: String) -> Self {
        let defaults = StoreConfig::default();
        Self {
            url,
            ca_file: None,
            tenant: gcrun_model::Tenant::default(),
            run_retention_secs: defaults.terminal_retention.as_secs(),
            dead_run_retention_secs: defaults.dead_retention.as_secs(),
            audit_cap: defaults.audit_cap,
        }
    }

    /// Record retention and the audit cap, from the flags.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            terminal_retention: Duration::from_secs(self.run_retention_secs.max(1)),
            dead_retention: Duration::from_secs(self.dead_run_retention_secs.max(1)),
            audit_cap: self.audit_cap.max(1),
            ..StoreConfig::default()
        }
    }

    /// Where Redis is, as the store connects to it.
    pub fn target(&self) -> Result<gcrun_store::RedisTarget> {
        let target = gcrun_store::RedisTarget::new(self.url.clone());
        Ok(match &self.ca_file {
            Some(path) => target.with_ca_file(path)?,
            None => target,
        })
    }

    /// The store and the three queues on one self-reconnecting connection.
    pub async fn open(&self) -> Result<(Store, Queues)> {
        let conn = gcrun_store::connect_to(&self.target()?).await.context("connecting to Redis (REDIS_URL)")?;
        let store = Store::for_tenant(conn.clone(), self.store_config(), &self.tenant);
        store.ping().await.context("Redis does not answer PING (REDIS_URL)")?;
        Ok((store, Queues::for_tenant(conn, &QueueSettings::default(), &self.tenant)))
    }
}

#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Region code, domain or base URL of Genesys Cloud (or the emulator).
    #[arg(long, env = "GENESYSCLOUD_REGION")]
    pub region: String,
    #[arg(long, env = "GENESYSCLOUD_OAUTHCLIENT_ID")]
    pub client_id: String,
    #[arg(long, env = "GENESYSCLOUD_OAUTHCLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// A file holding the client secret (a mounted Secret), read again when
    /// it changes: a rotation needs no restart.
    #[arg(long, env = "GENESYSCLOUD_OAUTHCLIENT_SECRET_FILE", conflicts_with = "client_secret")]
    pub client_secret_file: Option<std::path::PathBuf>,
    /// Admin server: /metrics, /healthz, /readyz.
    #[arg(long, env = "GCRUN_ADMIN_LISTEN", default_value = "127.0.0.1:9464")]
    pub admin_listen: String,
    #[arg(long, env = "GCRUN_SUBMIT_CONCURRENCY", default_value_t = 16)]
    pub submit_concurrency: usize,
    #[arg(long, env = "GCRUN_POLL_CONCURRENCY", default_value_t = 32)]
    pub poll_concurrency: usize,
    #[arg(long, env = "GCRUN_WEBHOOK_CONCURRENCY", default_value_t = 16)]
    pub webhook_concurrency: usize,
    /// Executions per minute shared by every worker of this client.
    #[arg(long, env = "GCRUN_RATE_PER_MINUTE", default_value_t = 2_500)]
    pub rate_per_minute: u32,
    #[arg(long, env = "GCRUN_RATE_BURST", default_value_t = 50)]
    pub rate_burst: u32,
    /// The window the rate is counted over, in milliseconds: a minute, as
    /// Genesys counts; never more than GCRUN_RATE_PER_MINUTE permits in any
    /// window. Shorter only against the emulator's scaled minutes.
    #[arg(long, env = "GCRUN_RATE_WINDOW_MS", default_value_t = 60_000)]
    pub rate_window_ms: u64,
    /// Runs in progress at once, shared by every worker of this client.
    #[arg(long, env = "GCRUN_MAX_CONCURRENT", default_value_t = 50)]
    pub max_concurrent: u32,
    /// Standard Webhooks secret (`whsec_...`) used to sign webhooks.
    #[arg(long, env = "GCRUN_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// A file holding the webhook secret(s), read again when it changes.
    #[arg(long, env = "GCRUN_WEBHOOK_SECRET_FILE", conflicts_with = "webhook_secret")]
    pub webhook_secret_file: Option<std::path::PathBuf>,
    /// Webhook URL for runs that name none.
    #[arg(long, env = "GCRUN_DEFAULT_WEBHOOK_URL", hide_env_values = true)]
    pub default_webhook_url: Option<url::Url>,
    /// Comma-separated hosts webhooks may go to (unset: any).
    #[arg(long, env = "GCRUN_WEBHOOK_ALLOWED_HOSTS", value_delimiter = ',')]
    pub webhook_allowed_hosts: Option<Vec<String>>,
    /// Longest a run denied a concurrency slot waits before it looks again,
    /// in milliseconds. A released slot wakes the longest waiter at once;
    /// this is only the safety net.
    #[arg(long, env = "GCRUN_SLOT_WAIT_MS", default_value_t = 30_000)]
    pub slot_wait_ms: u64,
    /// Let webhooks reach loopback, private and link-local addresses
    /// (receivers on a private network). Off: only public addresses, checked
    /// after DNS resolution.
    #[arg(long, env = "GCRUN_WEBHOOK_PRIVATE_NETWORKS", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_private_networks: bool,
    /// Comma-separated action or flow ids whose calls are idempotent: a
    /// submit whose outcome is unknown (sent, answer lost) is sent again
    /// instead of dead-lettered. Unset: at most once for every target.
    #[arg(long, env = "GCRUN_AT_LEAST_ONCE", value_delimiter = ',')]
    pub at_least_once: Option<Vec<String>>,
    #[arg(long, env = "GCRUN_MAX_WEBHOOK_ATTEMPTS", default_value_t = 12)]
    pub max_webhook_attempts: u32,
    #[arg(long, env = "GCRUN_MAX_SUBMIT_ATTEMPTS", default_value_t = 20)]
    pub max_submit_attempts: u32,
    /// First poll delay ceiling, in milliseconds (doubles each poll).
    #[arg(long, env = "GCRUN_POLL_BASE_MS", default_value_t = 1_000)]
    pub poll_base_ms: u64,
    /// Longest poll delay, in milliseconds.
    #[arg(long, env = "GCRUN_POLL_CAP_MS", default_value_t = 30_000)]
    pub poll_cap_ms: u64,
    /// Aim each run's first poll just past the time its action's runs have
    /// been seen to take (learnt by this process), not at the first delay:
    /// a run's slot is held until a poll sees its end.
    #[arg(long, env = "GCRUN_LEARN_POLL_TIMING", default_value_t = true, action = clap::ArgAction::Set)]
    pub learn_poll_timing: bool,
    /// Make each run's first webhook attempt in the job that saw the run
    /// end (a job fewer per run); `false` sends every attempt from a
    /// webhook job of its own, so a slow receiver holds only webhook
    /// concurrency, never submit or poll concurrency.
    #[arg(long, env = "GCRUN_WEBHOOK_INLINE", default_value_t = true, action = clap::ArgAction::Set)]
    pub webhook_inline: bool,
    /// Longest an idle worker waits before it looks again, in milliseconds:
    /// the pickup latency of a job pushed by another process.
    #[arg(long, env = "GCRUN_FETCH_INTERVAL_MS", default_value_t = 5_000)]
    pub fetch_interval_ms: u64,
    /// How long a job is leased to this worker, in seconds (renewed while
    /// it runs): the jobs of a worker that dies run elsewhere after at most
    /// this long.
    #[arg(long, env = "GCRUN_LEASE_SECS", default_value_t = 30)]
    pub lease_secs: u64,
    /// How long in-flight jobs get to finish on SIGTERM/SIGINT.
    #[arg(long, env = "GCRUN_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,
    /// How long a finished job's id is remembered, in seconds (a push of
    /// the same step within it is a no-op); then nothing of it is left. At
    /// least a lease plus the sweeper's grace (60 s), the longest a
    /// duplicate can still arrive.
    #[arg(long, env = "GCRUN_DONE_RETENTION_SECS", default_value_t = 3_600)]
    pub done_retention_secs: u64,
    /// How long a dead job (payload and reason) is kept, in seconds.
    #[arg(long, env = "GCRUN_DEAD_JOB_RETENTION_SECS", default_value_t = 30 * 86_400)]
    pub dead_job_retention_secs: u64,
    /// Seed of the retry jitter (reproducible schedules).
    #[arg(long, env = "GCRUN_JITTER_SEED")]
    pub jitter_seed: Option<u64>,
}

impl WorkerArgs {
    /// The worker's settings; fails on a bad region or webhook secret.
    pub fn settings(&self) -> Result<WorkerSettings> {
        let floor = self.lease_secs.max(1) + RunSettings::default().sweep_grace.as_secs();
        if self.done_retention_secs < floor {
            anyhow::bail!(
                "GCRUN_DONE_RETENTION_SECS is {} s; it must be at least the lease plus the sweeper's grace ({floor} s), \
                 or a late duplicate of a finished step could run again",
                self.done_retention_secs
            );
        }
        let environment = Environment::parse(&self.region)?;
        let webhook_secret = match (&self.webhook_secret, &self.webhook_secret_file) {
            (_, Some(path)) => Some(
                WebhookKeys::from_source(SecretSource::file(path)?)
                    .map_err(|e| anyhow::anyhow!("GCRUN_WEBHOOK_SECRET_FILE: {e}"))?,
            ),
            (Some(text), None) => {
                Some(WebhookKeys::parse(text).map_err(|e| anyhow::anyhow!("GCRUN_WEBHOOK_SECRET: {e}"))?)
            }
            (None, None) => None,
        };
        let credentials = match (&self.client_secret, &self.client_secret_file) {
            (_, Some(path)) => Credentials::from_source(&self.client_id, SecretSource::file(path)?),
            (Some(secret), None) => Credentials::new(&self.client_id, secret),
            (None, None) => {
                anyhow::bail!("GENESYSCLOUD_OAUTHCLIENT_SECRET or GENESYSCLOUD_OAUTHCLIENT_SECRET_FILE is required")
            }
        };
        Ok(WorkerSettings {
            redis: self.redis.target()?,
            tenant: self.redis.tenant.clone(),
            genesys: GenesysSettings { environment, credentials, client: ClientConfig::default() },
            limiter: LimiterConfig {
                name: self.client_id.clone(),
                rate_per_minute: self.rate_per_minute,
                burst: self.rate_burst,
                max_concurrent: self.max_concurrent,
                window: Duration::from_millis(self.rate_window_ms.max(1)),
                ..LimiterConfig::default()
            },
            policy: WorkerConfig {
                poll_schedule: RetrySchedule {
                    base: Duration::from_millis(self.poll_base_ms),
                    cap: Duration::from_millis(self.poll_cap_ms),
                    floor: Duration::from_millis(self.poll_base_ms / 2),
                },
                max_submit_attempts: self.max_submit_attempts,
                max_webhook_attempts: self.max_webhook_attempts,
                learn_poll_timing: self.learn_poll_timing,
                webhook_inline: self.webhook_inline,
                default_webhook_url: self.default_webhook_url.clone(),
                webhook_allowed_hosts: self.webhook_allowed_hosts.clone(),
                at_least_once: self.at_least_once.clone().unwrap_or_default(),
                limits: gcrun_model::RequestLimits {
                    webhook_private_addresses: self.webhook_private_networks,
                    ..gcrun_model::RequestLimits::default()
                },
                slot_wait: Duration::from_millis(self.slot_wait_ms.max(1)),
                webhook_egress: if self.webhook_private_networks {
                    gcrun_worker::egress::Egress::PrivateAllowed
                } else {
                    gcrun_worker::egress::Egress::PublicOnly
                },
                // A dead worker's submit claims lapse after one lease, as its jobs' do.
                submit_claim: Duration::from_secs(self.lease_secs.max(1)),
                submit_call: Duration::from_secs(self.lease_secs.max(1)),
                ..WorkerConfig::default()
            },
            run: RunSettings {
                submit_concurrency: self.submit_concurrency,
                poll_concurrency: self.poll_concurrency,
                webhook_concurrency: self.webhook_concurrency,
                poll_interval: Duration::from_millis(self.fetch_interval_ms.max(1)),
                shutdown_timeout: Duration::from_secs(self.shutdown_timeout_secs),
                done_retention: Duration::from_secs(self.done_retention_secs),
                dead_job_retention: Duration::from_secs(self.dead_job_retention_secs),
                ..RunSettings::default()
            },
            queues: QueueSettings { lease: Duration::from_secs(self.lease_secs.max(1)), ..QueueSettings::default() },
            store: self.redis.store_config(),
            webhook_secret,
            jitter_seed: self.jitter_seed,
        })
    }
}

/// `gcrun worker`: runs until SIGTERM/SIGINT.
pub async fn run(args: WorkerArgs) -> Result<()> {
    let worker = Worker::build(args.settings()?).await?;
    let listener = tokio::net::TcpListener::bind(&args.admin_listen)
        .await
        .with_context(|| format!("binding {}", args.admin_listen))?;
    println!("gcrun worker {} admin on http://{}", worker.instance(), listener.local_addr()?);
    worker.run(Some(listener), crate::shutdown_signal()).await?;
    Ok(())
}
