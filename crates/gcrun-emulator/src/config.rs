//! What the emulator serves and how it misbehaves. Everything here can be
//! set at start (`gcrun emulator` flags, or [`EmulatorConfig`] in a test);
//! [`Faults`] can also be changed at run time through the admin API.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::fixtures::Fixtures;

/// Full emulator configuration.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub fixtures: Fixtures,
    /// `expires_in` of issued tokens. Short values exercise renewal.
    pub token_ttl: Duration,
    pub timings: Timings,
    pub limits: Limits,
    pub faults: Faults,
    /// Seed of the fault dice and of generated ids' order-independent parts.
    pub seed: u64,
}

impl EmulatorConfig {
    /// A stand-in with no latency and no limits (benchmarks and backlog
    /// tests: what is measured is gcrun, not the API it waits for).
    pub fn zero_latency() -> Self {
        Self {
            timings: Timings { queued_for: Duration::ZERO, running_for: Duration::ZERO, execute_for: Duration::ZERO },
            limits: Limits {
                executions_per_window: None,
                window: Duration::from_secs(60),
                max_concurrent: None,
                requests_per_token: None,
            },
            ..Self::default()
        }
    }
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            fixtures: Fixtures::demo(),
            token_ttl: Duration::from_secs(86_400),
            timings: Timings::default(),
            limits: Limits::default(),
            faults: Faults::default(),
            seed: 0x0067_6372_756e,
        }
    }
}

/// How long runs take. A run of the `runs` or `workflow` flavor is queued
/// for `queued_for`, then running for `running_for`, then terminal; progress
/// is computed from the clock on each read, so nothing runs in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Timings {
    #[serde(with = "gcrun_model::serde_millis")]
    pub queued_for: Duration,
    #[serde(with = "gcrun_model::serde_millis")]
    pub running_for: Duration,
    /// How long a synchronous `execute` call takes to answer.
    #[serde(with = "gcrun_model::serde_millis")]
    pub execute_for: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            queued_for: Duration::from_millis(200),
            running_for: Duration::from_millis(800),
            execute_for: Duration::from_millis(50),
        }
    }
}

/// Enforced limits, answered with 429 like Genesys Cloud does. Defaults are
/// the reference's org limits: 2,500 executions a minute, 50 concurrent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Executions (submits of any flavor) allowed per `window`.
    pub executions_per_window: Option<u32>,
    /// The rate window; a minute, as in Genesys. Tests shorten it.
    #[serde(with = "gcrun_model::serde_millis")]
    pub window: Duration,
    /// Runs in progress at once (queued or running runs and flow
    /// executions, plus execute calls being answered).
    pub max_concurrent: Option<u32>,
    /// Platform API requests per token per window (Genesys: 300 a minute).
    /// Off by default: gcrun's tests assert on execution limits.
    pub requests_per_token: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            executions_per_window: Some(2_500),
            window: Duration::from_secs(60),
            max_concurrent: Some(50),
            requests_per_token: None,
        }
    }
}

/// Injected faults. Rates are probabilities in `[0, 1]` drawn from a seeded
/// generator, so a run with the same seed and request order sees the same
/// faults. They apply to the Platform API (`/api/v2/...`) only, never to
/// OAuth or the admin API, unless `oauth` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    /// Answer 429 `too.many.requests.retry.after` before handling.
    pub rate_429: f64,
    /// `Retry-After` seconds sent with injected 429s.
    pub retry_after_secs: u64,
    /// Answer a 5xx ErrorBody before handling.
    pub rate_5xx: f64,
    /// Which 5xx (500, 502, 503 or 504).
    pub status_5xx: u16,
    /// A `runs` poll reports a transient run error (`compute_unavailable`
    /// or `timeout`, alternating) instead of the run's state.
    pub rate_run_error: f64,
    /// Handle the request, then cut the connection before the body is sent.
    pub rate_drop: f64,
    /// Handle the request, then answer with a truncated JSON body.
    pub rate_malformed: f64,
    /// Extra latency added to every faultable request.
    #[serde(with = "gcrun_model::serde_millis")]
    pub latency: Duration,
    /// Stop injecting after this many faults (`None`: no limit). With a rate
    /// of 1.0 this makes "fail the next N requests" exact.
    pub budget: Option<u64>,
    /// Apply faults to `POST /oauth/token` too.
    pub oauth: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            rate_429: 0.0,
            retry_after_secs: 1,
            rate_5xx: 0.0,
            status_5xx: 503,
            rate_run_error: 0.0,
            rate_drop: 0.0,
            rate_malformed: 0.0,
            latency: Duration::ZERO,
            budget: None,
            oauth: false,
        }
    }
}

impl Faults {
    /// Checks rates and statuses, so a bad admin request gets a clear 400.
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("rate429", self.rate_429),
            ("rate5xx", self.rate_5xx),
            ("rateRunError", self.rate_run_error),
            ("rateDrop", self.rate_drop),
            ("rateMalformed", self.rate_malformed),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, got {rate}"));
            }
        }
        if !matches!(self.status_5xx, 500 | 502 | 503 | 504) {
            return Err(format!("status5xx must be 500, 502, 503 or 504, got {}", self.status_5xx));
        }
        Ok(())
    }
}
