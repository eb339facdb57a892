//! How gcrun reaches Redis, whatever its topology.
//!
//! One setting, `REDIS_URL`, names the topology by its scheme:
//!
//! | URL | what it is |
//! |---|---|
//! | `redis://[user:pass@]host:port[/db]`, `rediss://…` | one server (TLS for `rediss`) |
//! | `redis+sentinel://[user:pass@]s1:26379,s2:26379,…/service[/db]` | the primary the sentinels name for `service`, followed through failovers |
//! | `redis+cluster://[user:pass@]n1:6379,n2:6379,…`, `rediss+cluster://…` | a Redis Cluster, any of its nodes as seeds |
//!
//! [`Conn`] is the one connection type the store, the queue engine and
//! the producer use; it is cheap to clone (clones share one multiplexed
//! connection per node). [`Subscriber`] opens the pub/sub connection the
//! engine's wake-ups arrive on, asking again where to connect each time.
//!
//! Why each topology works with gcrun's scripts: every key a script
//! touches shares one hash tag, so on a Cluster every script is
//! single-slot and redis-rs routes it by its first key; `PUBLISH` from a
//! script reaches subscribers on every node. Under Sentinel, replication is
//! asynchronous: a write the old primary acknowledged but had not sent to
//! its replica when it died is lost (the window README's "Redis high
//! availability" documents).

mod sentinel;
mod target;

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

pub use target::{RedisTarget, Topology, shown_redis_url};

/// The connection settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Redis (or a sentinel) could not be reached or refused us: retryable.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The settings are unusable (a malformed URL, a CA file that cannot
    /// be read, TLS asked of a topology that does not support it here).
    #[error("{0}")]
    Config(String),
}

/// Every request waits at most this long for its answer, well above
/// redis-rs's 500 ms default, so a busy server is not taken for a dead one.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection attempt gives up after this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings for one server: a generous response timeout and reconnects
/// with backoff.
pub fn connection_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_number_of_retries(6)
        .set_max_delay(Duration::from_secs(2))
}

/// One logical connection to gcrun's Redis. Implements redis-rs's
/// [`ConnectionLike`], so commands, pipelines and scripts run on it as on
/// any redis-rs connection.
#[derive(Clone)]
pub struct Conn(Inner);

#[derive(Clone)]
enum Inner {
    Single(ConnectionManager),
    Sentinel(sentinel::SentinelConn),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Conn").field(&self.topology()).finish()
    }
}

impl Conn {
    /// Opens a connection to `target` (for Sentinel: asks the sentinels for
    /// the primary and checks it answers as one).
    pub async fn open(target: &RedisTarget) -> Result<Self, ConnectError> {
        Ok(Self(match target.topology() {
            Topology::Single => {
                Inner::Single(ConnectionManager::new_with_config(target.single_client()?, connection_config()).await?)
            }
            Topology::Sentinel { .. } => Inner::Sentinel(sentinel::SentinelConn::open(target).await?),
            Topology::Cluster => Inner::Cluster(target.cluster_client()?.get_async_connection().await?),
        }))
    }

    /// Wraps a connection to one server (tests, benchmarks).
    pub fn single(conn: ConnectionManager) -> Self {
        Self(Inner::Single(conn))
    }

    /// "single", "sentinel" or "cluster".
    pub fn topology(&self) -> &'static str {
        match self.0 {
            Inner::Single(_) => "single",
            Inner::Sentinel(_) => "sentinel",
            Inner::Cluster(_) => "cluster",
        }
    }

    /// Whether commands are spread over a Cluster's nodes: a keyless
    /// command (`SCAN`, `INFO`) then reaches one node, not the whole data.
    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Inner::Cluster(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Inner::Single(c) => c.req_packed_command(cmd),
            Inner::Sentinel(c) => c.req_packed_command(cmd),
            Inner::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Inner::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
            Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Single(c) => c.get_db(),
            Inner::Sentinel(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
        }
    }
}

/// Opens a connection to `target`.
pub async fn connect_to(target: &RedisTarget) -> Result<Conn, ConnectError> {
    Conn::open(target).await
}

/// Opens the pub/sub connections the queue engine's wake-ups come on.
/// Each [`Subscriber::pubsub`] asks again where to connect: the current
/// primary under Sentinel, the first seed that answers in a Cluster (a
/// `PUBLISH` reaches every node's subscribers).
#[derive(Clone)]
pub struct Subscriber {
    target: RedisTarget,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber").field("target", &self.target).finish()
    }
}

impl Subscriber {
    pub fn new(target: RedisTarget) -> Self {
        Self { target }
    }

    /// A fresh pub/sub connection.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, ConnectError> {
        match self.target.topology() {
            Topology::Single => Ok(self.target.single_client()?.get_async_pubsub().await?),
            Topology::Sentinel { .. } => Ok(sentinel::primary_client(&self.target).await?.get_async_pubsub().await?),
            Topology::Cluster => {
                let mut last = None;
                for client in self.target.node_clients()? {
                    match client.get_async_pubsub().await {
                        Ok(p) => return Ok(p),
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.map_or_else(|| ConnectError::Config("no cluster nodes".into()), ConnectError::Redis))
            }
        }
    }
}

/// Installs aws-lc-rs as the process's rustls provider, once. rustls
/// refuses to pick one itself when a build holds several, and would then
/// fail the first TLS handshake at run time.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}
