//! The only crate that knows gcrun's own Redis keys.
//!
//! - [`keys`]: every key name, all under the `{gcrun}` hash tag so each
//!   multi-key script touches one cluster slot.
//! - [`record`]: [`RunRecord`], a run as stored, and [`RunUpdate`], the
//!   fields a transition may set with it.
//! - [`runs`]: create (with idempotency), read, and [`Store::transition`]:
//!   status, history, audit stream, counts and dead-letter index in one Lua
//!   script, compare-and-set on the current status.
//! - [`webhooks`]: webhook delivery attempts (compare-and-set), the webhook
//!   dead-letter index and its requeue.
//! - [`audit`]: status counts and the audit stream.
//! - [`definitions`]: action definitions cached for every worker.
//! - [`view`]: [`RunView`], a run as APIs show it.
//! - [`dlq`]: list, filter, requeue and purge dead-lettered runs.
//! - [`holds`]: operators' holds on a flavor or an action, and the runs
//!   they parked.
//! - [`query`]: paging through the run index and the dead-letter set at
//!   a cost that does not grow with depth.
//! - [`limiter`]: the limiter shared by every worker process: GCRA rate,
//!   concurrency leases that expire, and a pause-until set from any 429.
//!
//! Writes that must be atomic with each other are one Lua script, kept in
//! `lua/` with its KEYS and ARGV named at the top; anything else is a
//! single command.

pub mod audit;
pub mod definitions;
pub mod dlq;
pub mod holds;
pub mod keys;
pub mod limiter;
pub mod query;
pub mod record;
pub mod runs;
pub mod view;
pub mod webhooks;
pub mod write;

use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use thiserror::Error;

pub use audit::AuditEntry;
pub use dlq::DlqFilter;
pub use holds::HoldScope;
pub use limiter::{Acquired, Denied, Limiter, LimiterConfig, LimiterStatus, Permit};
pub use query::{Page, PageRequest, RunFilter};
pub use record::{RunRecord, RunUpdate, WebhookState};
pub use redis::aio::ConnectionManager;
pub use runs::{Attempt, Claim, Counter, Created, Origin, TransitionOutcome};
pub use view::{AttemptView, RunView, TransitionView, WebhookView};
pub use webhooks::{WebhookAttempt, WebhookRequeue};
pub use write::{PreparedWrite, WriteKind, WriteOutcome};

/// Store settings: caps and retention. Every one is configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Approximate cap of the audit stream (`XADD MAXLEN ~`).
    pub audit_cap: u64,
    /// How long an idempotency key maps to its run.
    pub idempotency_ttl: Duration,
    /// How long a completed, failed or timed-out run is kept.
    pub terminal_retention: Duration,
    /// How long a dead-lettered (rejected, dead) run is kept.
    pub dead_retention: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            audit_cap: 1_000_000,
            idempotency_ttl: Duration::from_secs(7 * 86_400),
            terminal_retention: Duration::from_secs(7 * 86_400),
            dead_retention: Duration::from_secs(30 * 86_400),
        }
    }
}

/// A store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Redis could not be reached or answered with an error: retryable.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A stored value is not what gcrun wrote: a bug or foreign data.
    #[error("corrupt record for run {run}: {detail}")]
    Corrupt { run: String, detail: String },
    /// The model refused a transition before it reached Redis.
    #[error(transparent)]
    Illegal(#[from] gcrun_model::IllegalTransition),
    /// No such run.
    #[error("run {0} not found")]
    NotFound(String),
    /// The connection settings are unusable (a CA file that cannot be read).
    #[error("{0}")]
    Config(String),
    /// The run's state does not allow it (a secure run whose inputs were
    /// erased at its end cannot be requeued).
    #[error("{0}")]
    Refused(String),
}

/// gcrun's view of Redis. Cheap to clone: clones share one multiplexed,
/// self-reconnecting connection.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    config: StoreConfig,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("config", &self.config).finish_non_exhaustive()
    }
}

/// Connection settings that survive a Redis blip: a response timeout well
/// above redis-rs's 500 ms default and reconnects with backoff.
pub fn connection_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(6)
        .set_max_delay(Duration::from_secs(2))
}

/// Where Redis is: a `redis://` or `rediss://` URL (credentials allowed,
/// never shown), and for `rediss://` a CA to trust instead of the system's
/// store (a private CA). The server's certificate is always verified.
#[derive(Clone)]
pub struct RedisTarget {
    url: String,
    ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("url", &shown_redis_url(&self.url))
            .field("ca", &self.ca_pem.is_some())
            .finish()
    }
}

/// A Redis URL as logs and errors may show it: without its password.
pub fn shown_redis_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(not a URL)".into(),
    }
}

impl RedisTarget {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), ca_pem: None }
    }

    /// Trusts the CA(s) in `path` (PEM) for `rediss://` instead of the
    /// system's store.
    pub fn with_ca_file(mut self, path: &std::path::Path) -> Result<Self, StoreError> {
        let pem = std::fs::read(path)
            .map_err(|e| StoreError::Config(format!("reading the Redis CA file {}: {e}", path.display())))?;
        self.ca_pem = Some(pem);
        Ok(self)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client for it (no connection yet).
    pub fn client(&self) -> Result<redis::Client, StoreError> {
        if self.url.starts_with("rediss:") {
            install_crypto_provider();
        }
        Ok(match &self.ca_pem {
            Some(pem) => redis::Client::build_with_tls(
                self.url.as_str(),
                redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) },
            )?,
            None => redis::Client::open(self.url.as_str())?,
        })
    }
}

/// Installs aws-lc-rs as the process's rustls provider, once. rustls
/// refuses to pick one itself when a build holds several, and would then
/// fail the first TLS handshake at run time.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// Opens a self-reconnecting connection to `url` (redis:// or rediss://
/// with the system's trusted CAs).
pub async fn connect(url: &str) -> Result<ConnectionManager, StoreError> {
    connect_to(&RedisTarget::new(url)).await
}

/// Opens a self-reconnecting connection to `target`.
pub async fn connect_to(target: &RedisTarget) -> Result<ConnectionManager, StoreError> {
    Ok(ConnectionManager::new_with_config(target.client()?, connection_config()).await?)
}

impl Store {
    pub fn new(conn: ConnectionManager, config: StoreConfig) -> Self {
        Self { conn, config }
    }

    pub async fn open(url: &str, config: StoreConfig) -> Result<Self, StoreError> {
        Ok(Self::new(connect(url).await?, config))
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The store's connection (for a script that composes a store write
    /// with other work, see [`write`]).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub(crate) fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// `PING`: for readiness probes.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Redis's clock (`TIME`), in ms since the epoch: the clock every
    /// claim, lease, pause and schedule is timed by.
    pub async fn redis_now_ms(&self) -> Result<u64, StoreError> {
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut self.conn()).await?;
        Ok(secs * 1000 + micros / 1000)
    }
}
