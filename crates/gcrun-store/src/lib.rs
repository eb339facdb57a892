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

use gcrun_model::Tenant;
use thiserror::Error;

pub use audit::AuditEntry;
pub use dlq::DlqFilter;
pub use holds::HoldScope;
pub use limiter::{Acquired, Denied, Limiter, LimiterConfig, LimiterStatus, Permit};
pub use query::{Page, PageRequest, RunFilter};
pub use record::{RunRecord, RunUpdate, WebhookState};
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
/// self-reconnecting connection (per node, on a Cluster).
#[derive(Clone)]
pub struct Store {
    conn: Conn,
    config: StoreConfig,
    keys: keys::Keys,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("tenant", self.keys.tenant())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

pub use gcrun_redis::{Conn, ConnectError, RedisTarget, Subscriber, Topology, connection_config, shown_redis_url};

impl From<ConnectError> for StoreError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Redis(e) => Self::Redis(e),
            ConnectError::Config(msg) => Self::Config(msg),
        }
    }
}

/// Opens a connection to `url` (any form [`RedisTarget`] takes, with the
/// system's trusted CAs).
pub async fn connect(url: &str) -> Result<Conn, StoreError> {
    connect_to(&RedisTarget::new(url)).await
}

/// Opens a connection to `target`.
pub async fn connect_to(target: &RedisTarget) -> Result<Conn, StoreError> {
    Ok(Conn::open(target).await?)
}

impl Store {
    /// The default tenant's store (the single-org layout).
    pub fn new(conn: Conn, config: StoreConfig) -> Self {
        Self::for_tenant(conn, config, &Tenant::default())
    }

    /// `tenant`'s store: its keys under its own hash tag.
    pub fn for_tenant(conn: Conn, config: StoreConfig, tenant: &Tenant) -> Self {
        Self { conn, config, keys: keys::Keys::of(tenant) }
    }

    /// The same Redis, another tenant's keys.
    pub fn of_tenant(&self, tenant: &Tenant) -> Self {
        Self::for_tenant(self.conn.clone(), self.config.clone(), tenant)
    }

    pub fn tenant(&self) -> &Tenant {
        self.keys.tenant()
    }

    /// This tenant's key names.
    pub fn keys(&self) -> &keys::Keys {
        &self.keys
    }

    pub async fn open(url: &str, config: StoreConfig) -> Result<Self, StoreError> {
        Ok(Self::new(connect(url).await?, config))
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The store's connection (for a script that composes a store write
    /// with other work, see [`write`]).
    pub fn connection(&self) -> Conn {
        self.conn.clone()
    }

    pub(crate) fn conn(&self) -> Conn {
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
