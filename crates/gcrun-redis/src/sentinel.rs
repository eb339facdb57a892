//! A connection that follows the primary Sentinel names.
//!
//! redis-rs's `ConnectionManager` reconnects to the address it was given,
//! which after a failover is a dead server or a replica. This connection
//! instead forgets its primary when a request fails the way a failover
//! makes requests fail (the connection dropped or refused, or `READONLY`
//! from a demoted primary) and asks the sentinels again on the next
//! request. A request that failed is not resent here, except after
//! `READONLY`, which means the server did not run it: the callers already
//! treat a Redis error as retryable (a step's job runs again, a fetch
//! loop backs off), as they do for a one-server blip.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelServerType};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, RedisFuture, Value};

use crate::{CONNECT_TIMEOUT, ConnectError, RESPONSE_TIMEOUT, RedisTarget};

#[derive(Clone)]
pub(crate) struct SentinelConn {
    shared: Arc<Shared>,
    db: i64,
}

struct Shared {
    /// Asked one request at a time, so a failover makes one lookup, not one
    /// per waiting request.
    sentinel: tokio::sync::Mutex<SentinelClient>,
    /// The primary's connection and its generation (a failure retires only
    /// the generation it happened on).
    current: Mutex<Option<(u64, MultiplexedConnection)>>,
    generations: AtomicU64,
}

fn config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
}

fn sentinel_client(target: &RedisTarget) -> Result<SentinelClient, ConnectError> {
    let (sentinels, service, node) = target.sentinel_parts()?;
    Ok(SentinelClient::build(sentinels, service, Some(node), SentinelServerType::Master)?)
}

/// A client for the primary the sentinels name now (checked to answer as
/// a primary).
pub(crate) async fn primary_client(target: &RedisTarget) -> Result<redis::Client, ConnectError> {
    Ok(sentinel_client(target)?.async_get_client().await?)
}

/// Whether `e` means the primary this connection knew is gone or demoted.
fn lost_primary(e: &RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() || read_only(e)
}

fn read_only(e: &RedisError) -> bool {
    e.code() == Some("READONLY") || e.to_string().contains("READONLY")
}

impl SentinelConn {
    pub(crate) async fn open(target: &RedisTarget) -> Result<Self, ConnectError> {
        let conn = Self {
            shared: Arc::new(Shared {
                sentinel: tokio::sync::Mutex::new(sentinel_client(target)?),
                current: Mutex::new(None),
                generations: AtomicU64::new(0),
            }),
            db: target.db(),
        };
        // Fail at start, not at the first request, when nothing answers.
        conn.primary().await?;
        Ok(conn)
    }

    fn known(&self) -> Option<(u64, MultiplexedConnection)> {
        self.shared.current.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn primary(&self) -> Result<(u64, MultiplexedConnection), RedisError> {
        if let Some(known) = self.known() {
            return Ok(known);
        }
        let mut sentinel = self.shared.sentinel.lock().await;
        if let Some(known) = self.known() {
            return Ok(known);
        }
        let client = sentinel.async_get_client().await?;
        let conn = client.get_multiplexed_async_connection_with_config(&config()).await?;
        let mut current = self.shared.current.lock().unwrap_or_else(|p| p.into_inner());
        let generation = self.shared.generations.fetch_add(1, Ordering::Relaxed);
        *current = Some((generation, conn.clone()));
        tracing::info!(primary = %client.get_connection_info().addr(), "connected to the primary Sentinel names");
        Ok((generation, conn))
    }

    fn forget(&self, generation: u64, e: &RedisError) {
        let mut current = self.shared.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            tracing::warn!(error = %e, "the primary did not answer as one; asking the sentinels again");
            *current = None;
        }
    }
}

impl ConnectionLike for SentinelConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut tries = 0;
            loop {
                tries += 1;
                let (generation, mut conn) = self.primary().await?;
                match conn.req_packed_command(cmd).await {
                    Err(e) if lost_primary(&e) => {
                        self.forget(generation, &e);
                        if !(read_only(&e) && tries < 2) {
                            return Err(e);
                        }
                    }
                    other => return other,
                }
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let (generation, mut conn) = self.primary().await?;
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &result
                && lost_primary(e)
            {
                self.forget(generation, e);
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}
