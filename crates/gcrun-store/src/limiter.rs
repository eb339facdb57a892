//! The limiter every worker process shares, per Genesys org/client.
//!
//! Three parts, one Lua script each way, so all pods see one truth:
//! - **rate**: GCRA (a token bucket kept as one "theoretical arrival time",
//!   in microseconds) of `rate_per_minute` with a `burst`; a run told to
//!   wait gets the token it will use reserved, so each waiter is told a
//!   moment of its own and asks once more, not once per token that comes
//!   free. GCRA alone lets `burst` more than the rate through in a window
//!   that holds a burst, and Genesys counts executions over the window:
//!   so the permits granted in the last window are also logged, and never
//!   more than `rate_per_minute` of them are granted in any window (a
//!   sliding-window cap). The window is a minute plus [`margin`], so
//!   permits that reach Genesys a little late or early still fit its
//!   minute;
//! - **concurrency**: a sorted set of leases scored by expiry; a crashed
//!   worker's leases lapse on their own after `lease_ttl`;
//! - **pause**: a time before which nobody submits, set from any 429's
//!   `Retry-After`, so every pod backs off, not just the one that was told.
//!
//! `acquire` never waits: it grants a [`Permit`] or says how long until one
//! is expected, and the caller schedules its job for then. Every time the
//! limiter compares is Redis's (`TIME` inside its scripts), never a
//! worker's clock: one pod with a fast clock cannot expire the leases of
//! the others or end a pause early.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use crate::{Store, StoreError};

/// Limits for one Genesys client (the reference's org limits by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Name of the limited client (e.g. the OAuth client id).
    pub name: String,
    pub rate_per_minute: u32,
    /// Submissions allowed back to back before the rate applies.
    pub burst: u32,
    pub max_concurrent: u32,
    /// How long a lease lives without renewal.
    pub lease_ttl: Duration,
    /// The rate's window: a minute, as Genesys counts; `rate_per_minute`
    /// permits per window. Shorter only against the emulator's scaled
    /// minutes (tests, benchmarks).
    pub window: Duration,
}

/// What the rate's window is widened by: a 120th of it (half a second a
/// minute). A permit is granted by Redis's clock and reaches Genesys a few
/// milliseconds later, more or less; the margin keeps two permits a window
/// apart by gcrun's clock a window apart at Genesys too. It costs under
/// 1 % of the rate.
pub fn margin(window: Duration) -> Duration {
    window / 120
}

impl Default for LimiterConfig {
    fn default() -> Self {
        Self {
            name: "default".into(),
            rate_per_minute: 2_500,
            burst: 50,
            max_concurrent: 50,
            lease_ttl: Duration::from_secs(180),
            window: Duration::from_secs(60),
        }
    }
}

/// A granted concurrency lease. Release it when the run ends; renew it
/// while the run goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    pub lease: String,
}

static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/limiter_acquire.lua")));

static PAUSE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/limiter_pause.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/limiter_release.lua")));
static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/limiter_renew.lua")));
static WAIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/limiter_wait.lua")));
static HELD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/limiter_held.lua")));

/// What [`Limiter::acquire`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    /// The permit, or how long until one is expected and which limit said
    /// no.
    pub outcome: Result<Permit, (Duration, Denied)>,
    /// Runs taken off the slot waiting list because leases that lapsed (a
    /// dead worker's) freed slots this call did not take: the caller pushes
    /// a submit job for each, as for a release.
    pub woken: Vec<String>,
}

/// Why a permit was not granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// A 429 told everyone to wait.
    Paused,
    Concurrency,
    Rate,
}

/// One limiter as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LimiterStatus {
    pub name: String,
    /// Concurrency leases held (live ones).
    pub held: u64,
    /// Runs waiting for a concurrency slot.
    pub waiting: u64,
    /// Runs told to wait for the rate, each with a token reserved.
    pub reserved: u64,
    /// A 429 paused every worker for this much longer.
    pub paused_for_ms: Option<u64>,
}

/// A handle on the shared limiter for one client.
#[derive(Debug, Clone)]
pub struct Limiter {
    store: Store,
    config: LimiterConfig,
    keys: [String; 3],
    waiting: String,
    reserved: String,
    granted: String,
}

impl Store {
    /// The limiters workers registered, with the limits each was given
    /// (JSON), by name.
    pub async fn limiters(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let h: std::collections::BTreeMap<String, String> =
            redis::cmd("HGETALL").arg(self.keys.limiters()).query_async(&mut self.conn()).await?;
        Ok(h.into_iter().map(|(k, v)| (k, serde_json::from_str(&v).unwrap_or(serde_json::Value::Null))).collect())
    }

    pub fn limiter(&self, config: LimiterConfig) -> Limiter {
        let keys = self.keys.limiter(&config.name);
        let waiting = self.keys.limiter_waiting(&config.name);
        let reserved = self.keys.limiter_reserved(&config.name);
        let granted = self.keys.limiter_granted(&config.name);
        Limiter { store: self.clone(), config, keys, waiting, reserved, granted }
    }
}

impl Limiter {
    pub fn config(&self) -> &LimiterConfig {
        &self.config
    }

    /// Asks for a permit for `lease` (use the run id: re-asking for a lease
    /// already held succeeds, so a re-delivered job does not count twice).
    /// `outcome`'s `Err((wait, why))` says how long until one is expected,
    /// and which limit said no; `woken` lists the runs to wake. Every time
    /// here is Redis's own clock.
    pub async fn acquire(&self, lease: &str) -> Result<Acquired, StoreError> {
        let rate = self.config.rate_per_minute.max(1);
        let window = self.config.window + margin(self.config.window);
        // In microseconds: a whole-millisecond interval ran fast for any
        // rate that does not divide the window (7,000 a minute got 8 ms,
        // 7,500 a minute).
        let interval_us = (window.as_micros() as u64 / u64::from(rate)).max(1);
        let (granted, wait_ms, reason, woken): (i64, i64, String, Vec<String>) = ACQUIRE
            .key(&self.keys[0])
            .key(&self.keys[1])
            .key(&self.keys[2])
            .key(&self.waiting)
            .key(&self.reserved)
            .key(&self.granted)
            .arg(interval_us)
            .arg(self.config.burst.max(1))
            .arg(self.config.max_concurrent.max(1))
            .arg(self.config.lease_ttl.as_millis() as u64)
            .arg(lease)
            .arg(rate)
            .arg(window.as_millis() as u64)
            .invoke_async(&mut self.store.conn())
            .await?;
        if granted == 1 {
            return Ok(Acquired { outcome: Ok(Permit { lease: lease.to_string() }), woken });
        }
        let denied = match reason.as_str() {
            "paused" => Denied::Paused,
            "concurrency" => Denied::Concurrency,
            _ => Denied::Rate,
        };
        Ok(Acquired { outcome: Err((Duration::from_millis(wait_ms.max(1) as u64), denied)), woken })
    }

    /// Extends a lease by `lease_ttl` from now while its run goes on
    /// (adding it back if a long server-requested wait let it lapse: the
    /// run is still in progress).
    pub async fn renew(&self, lease: &str) -> Result<(), StoreError> {
        let _: i64 = RENEW
            .key(&self.keys[1])
            .arg(lease)
            .arg(self.config.lease_ttl.as_millis() as u64)
            .invoke_async(&mut self.store.conn())
            .await?;
        Ok(())
    }

    /// Gives a lease back when its run has ended, and wakes the run that
    /// has waited longest for a slot: `Some(run)` is that run, for which the
    /// caller pushes a submit job now.
    pub async fn release(&self, lease: &str) -> Result<Option<String>, StoreError> {
        Ok(RELEASE.key(&self.keys[1]).key(&self.waiting).arg(lease).invoke_async(&mut self.store.conn()).await?)
    }

    /// Puts `run` on the list of runs waiting for a concurrency slot (once:
    /// a run that waits again keeps its place).
    pub async fn wait_for_slot(&self, run: &str) -> Result<(), StoreError> {
        let _: i64 = WAIT.key(&self.waiting).arg(run).invoke_async(&mut self.store.conn()).await?;
        Ok(())
    }

    /// Runs waiting for a concurrency slot.
    pub async fn waiting(&self) -> Result<u64, StoreError> {
        Ok(redis::cmd("ZCARD").arg(&self.waiting).query_async(&mut self.store.conn()).await?)
    }

    /// Tells every worker to wait `for_` from now (from a 429's
    /// `Retry-After`), unless a later pause stands.
    pub async fn pause_for(&self, for_: Duration) -> Result<(), StoreError> {
        let px = (for_.as_millis() as u64).max(1);
        let _: i64 = PAUSE.key(&self.keys[2]).arg(px).invoke_async(&mut self.store.conn()).await?;
        Ok(())
    }

    /// Writes this client's limits where operators read them
    /// ([`Store::limiters`]): every worker does at start, so `gcrun stats`
    /// finds the limiters in use without scanning the keyspace.
    pub async fn register(&self) -> Result<(), StoreError> {
        let c = &self.config;
        let doc = serde_json::json!({
            "ratePerMinute": c.rate_per_minute, "burst": c.burst,
            "maxConcurrent": c.max_concurrent, "leaseTtlSecs": c.lease_ttl.as_secs(),
            "windowMs": c.window.as_millis() as u64,
        });
        let _: i64 = redis::cmd("HSET")
            .arg(self.store.keys.limiters())
            .arg(&c.name)
            .arg(doc.to_string())
            .query_async(&mut self.store.conn())
            .await?;
        Ok(())
    }

    /// How the limiter stands now, by Redis's clock.
    pub async fn status(&self) -> Result<LimiterStatus, StoreError> {
        let held = self.held().await?;
        let mut conn = self.store.conn();
        let (waiting, reserved, pause_left): (u64, u64, i64) = redis::pipe()
            .cmd("ZCARD")
            .arg(&self.waiting)
            .cmd("ZCARD")
            .arg(&self.reserved)
            .cmd("PTTL")
            .arg(&self.keys[2])
            .query_async(&mut conn)
            .await?;
        Ok(LimiterStatus {
            name: self.config.name.clone(),
            held,
            waiting,
            reserved,
            paused_for_ms: u64::try_from(pause_left).ok().filter(|ms| *ms > 0),
        })
    }

    /// Leases held now (live ones only).
    pub async fn held(&self) -> Result<u64, StoreError> {
        Ok(HELD.key(&self.keys[1]).invoke_async(&mut self.store.conn()).await?)
    }
}
