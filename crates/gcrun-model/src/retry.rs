//! The retry schedule and the retryable/fatal split.
//!
//! Durable backoff in gcrun is a *schedule*: a handler that must wait does
//! not sleep, it schedules its next job at `now + delay(attempt)` and
//! returns, so the wait survives a crash. This module is the pure half of
//! that: a function from attempt number to delay, with an exponential
//! ceiling, a cap and full jitter (AWS "Exponential Backoff and Jitter"),
//! plus the rule that a server's `Retry-After` wins when it asks for more.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Whether a failure is worth trying again, and when. Every error gcrun
/// handles carries one, so a handler decides by matching, never by
/// inspecting status codes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: try again, no sooner than `after` when the server said so.
    Retryable { after: Option<Duration> },
    /// Permanent: trying again cannot help; end with a stored reason.
    Fatal,
}

impl ErrorClass {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ErrorClass::Retryable { .. })
    }
}

/// Exponential backoff with a cap and full jitter.
///
/// `ceiling(n) = min(cap, base × 2ⁿ)` and `delay(n)` is uniform in
/// `[min(floor, ceiling(n)), ceiling(n)]`. The floor keeps a busy queue from
/// re-polling at once when the jitter draws zero (apalis schedules at one
/// second resolution anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySchedule {
    /// Ceiling of the first retry (attempt 0).
    #[serde(with = "crate::serde_millis")]
    pub base: Duration,
    /// Largest delay ever returned, Retry-After aside.
    #[serde(with = "crate::serde_millis")]
    pub cap: Duration,
    /// Smallest delay returned (clamped to the ceiling).
    #[serde(with = "crate::serde_millis")]
    pub floor: Duration,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        Self { base: Duration::from_secs(1), cap: Duration::from_secs(60), floor: Duration::from_millis(500) }
    }
}

impl RetrySchedule {
    /// The upper bound of the delay before attempt `attempt` (0-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay before attempt `attempt`, drawn with full jitter.
    pub fn delay(&self, attempt: u32, jitter: &mut Jitter) -> Duration {
        let ceiling = self.ceiling(attempt);
        let floor = self.floor.min(ceiling);
        let span = (ceiling - floor).as_millis() as u64;
        floor + Duration::from_millis(jitter.0.u64(0..=span))
    }

    /// The delay before attempt `attempt` when the server may have asked
    /// for a wait: the larger of the two wins. `Retry-After` is honoured
    /// even past `cap` (the server knows best), and jitter is still drawn on
    /// top of it (up to a tenth of the wait, at most the attempt's ceiling)
    /// so that many clients told the same thing do not return in lockstep.
    pub fn delay_after(&self, attempt: u32, retry_after: Option<Duration>, jitter: &mut Jitter) -> Duration {
        let drawn = self.delay(attempt, jitter);
        match retry_after {
            Some(server) if server > drawn => {
                let spread = (server / 10).min(self.ceiling(attempt)).as_millis() as u64;
                server + Duration::from_millis(jitter.0.u64(0..=spread))
            }
            _ => drawn,
        }
    }
}

/// The source of jitter. Seedable so tests (and a reproducible demo) get
/// the same delays every run; `fastrand` is small, fast and well kept, and
/// jitter needs no cryptographic randomness.
#[derive(Debug, Clone)]
pub struct Jitter(fastrand::Rng);

impl Jitter {
    pub fn seeded(seed: u64) -> Self {
        Self(fastrand::Rng::with_seed(seed))
    }

    pub fn from_entropy() -> Self {
        Self(fastrand::Rng::new())
    }
}
