//! Worker settings. Every limit is a field with a sane default.

use std::time::Duration;

use gcrun_model::{RequestLimits, RetrySchedule};
use url::Url;

/// How the steps behave: their policy. `Debug` shows the default webhook
/// URL without its query, which may carry a token.
#[derive(Clone)]
pub struct WorkerConfig {
    /// Request rules re-checked in the worker (a request that slipped past
    /// an older producer still ends with a clear reason).
    pub limits: RequestLimits,
    /// Delay before poll n.
    pub poll_schedule: RetrySchedule,
    /// Delay before a submit is retried after a transient failure.
    pub submit_schedule: RetrySchedule,
    /// Delay before a webhook is retried.
    pub webhook_schedule: RetrySchedule,
    /// Transient submit failures tolerated before a run is `dead`.
    pub max_submit_attempts: u32,
    /// Polls allowed before a run is `dead` (the deadline usually ends it first).
    pub max_poll_attempts: u32,
    /// Webhook attempts before the webhook is `dead`.
    pub max_webhook_attempts: u32,
    /// How long a cached action definition is trusted.
    pub definition_ttl: Duration,
    /// Where webhooks go when a run names none (`None`: no webhook).
    pub default_webhook_url: Option<Url>,
    /// When set, webhooks may only go to these hosts.
    pub webhook_allowed_hosts: Option<Vec<String>>,
    /// Timeout of one webhook POST.
    pub webhook_timeout: Duration,
    /// How long one worker holds the right to submit a run: longer than the
    /// slowest submit call (the client's request timeout), so two copies of
    /// a submit job never call Genesys at once.
    pub submit_claim: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            limits: RequestLimits::default(),
            poll_schedule: RetrySchedule {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(30),
                floor: Duration::from_millis(500),
            },
            submit_schedule: RetrySchedule::default(),
            webhook_schedule: RetrySchedule {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(300),
                floor: Duration::from_millis(500),
            },
            max_submit_attempts: 20,
            max_poll_attempts: 1_000,
            max_webhook_attempts: 12,
            definition_ttl: Duration::from_secs(60),
            default_webhook_url: None,
            webhook_allowed_hosts: None,
            webhook_timeout: Duration::from_secs(10),
            submit_claim: Duration::from_secs(75),
        }
    }
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("limits", &self.limits)
            .field("poll_schedule", &self.poll_schedule)
            .field("submit_schedule", &self.submit_schedule)
            .field("webhook_schedule", &self.webhook_schedule)
            .field("max_submit_attempts", &self.max_submit_attempts)
            .field("max_poll_attempts", &self.max_poll_attempts)
            .field("max_webhook_attempts", &self.max_webhook_attempts)
            .field("definition_ttl", &self.definition_ttl)
            .field("default_webhook_url", &self.default_webhook_url.as_ref().map(crate::webhook::shown_url))
            .field("webhook_allowed_hosts", &self.webhook_allowed_hosts)
            .field("webhook_timeout", &self.webhook_timeout)
            .field("submit_claim", &self.submit_claim)
            .finish()
    }
}
