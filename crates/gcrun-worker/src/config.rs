//! Worker settings. Every limit is a field with a sane default.

use std::time::Duration;

use gcrun_model::{RequestLimits, RetrySchedule, Tenant};
use url::Url;

/// How the steps behave: their policy. `Debug` shows the default webhook
/// URL without its query, which may carry a token.
#[derive(Clone)]
pub struct WorkerConfig {
    /// The tenant this worker serves (its keys, its Genesys org); named
    /// in its webhooks unless it is the default tenant.
    pub tenant: Tenant,
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
    /// Aim a run's first poll just past the time its action's runs have
    /// been seen to take (see [`crate::durations`]), instead of at the
    /// schedule's first delay.
    pub learn_poll_timing: bool,
    /// Make a run's first webhook attempt in the job of the step that saw
    /// the run end, once the end is stored, rather than in a webhook job of
    /// its own: a job fewer per run (its push, fetch, lease and ack). Only
    /// an attempt that fails pushes a webhook job, for the retries. The
    /// attempt holds that step's job (and its concurrency) for as long as
    /// the receiver takes, up to `webhook_timeout`.
    pub webhook_inline: bool,
    /// Where webhooks go when a run names none (`None`: no webhook).
    pub default_webhook_url: Option<Url>,
    /// When set, webhooks may only go to these hosts.
    pub webhook_allowed_hosts: Option<Vec<String>>,
    /// Whether webhooks may reach loopback, private and link-local
    /// addresses (see [`crate::egress`]); by default they may not.
    pub webhook_egress: crate::egress::Egress,
    /// Timeout of one webhook POST.
    pub webhook_timeout: Duration,
    /// How long a copy holds the right to submit a run while it gets a
    /// permit, before the call (a copy that dies here is replaced once it
    /// lapses).
    pub submit_claim: Duration,
    /// The claim over a call in flight: set when the call is marked as sent
    /// and renewed every third of it while the call runs (however long the
    /// token wait, the request, a renewal on 401 and a second request take),
    /// so two copies never call Genesys at once, and a worker that dies
    /// mid-call has its run found with an unknown outcome after this long.
    pub submit_call: Duration,
    /// How long a run denied a concurrency slot waits at most before it
    /// looks again: a released slot wakes the longest waiter at once, so
    /// this is only the safety net (a lost wake-up, a lapsed lease).
    pub slot_wait: Duration,
    /// Targets (action or flow ids) whose calls are idempotent (lookups,
    /// say): a submit whose outcome is unknown is sent again instead of
    /// dead-lettered (at least once rather than at most once).
    pub at_least_once: Vec<String>,
}

impl WorkerConfig {
    /// Whether a submit of `target` whose outcome is unknown may be sent again.
    pub fn retries_unknown(&self, target: &str) -> bool {
        self.at_least_once.iter().any(|t| t == target)
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            tenant: Tenant::default(),
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
            learn_poll_timing: true,
            webhook_inline: true,
            default_webhook_url: None,
            webhook_allowed_hosts: None,
            webhook_egress: crate::egress::Egress::PublicOnly,
            webhook_timeout: Duration::from_secs(10),
            submit_claim: Duration::from_secs(30),
            submit_call: Duration::from_secs(30),
            at_least_once: Vec::new(),
            slot_wait: Duration::from_secs(30),
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
            .field("learn_poll_timing", &self.learn_poll_timing)
            .field("webhook_inline", &self.webhook_inline)
            .field("default_webhook_url", &self.default_webhook_url.as_ref().map(crate::webhook::shown_url))
            .field("webhook_allowed_hosts", &self.webhook_allowed_hosts)
            .field("webhook_egress", &self.webhook_egress)
            .field("webhook_timeout", &self.webhook_timeout)
            .field("submit_claim", &self.submit_claim)
            .field("submit_call", &self.submit_call)
            .field("at_least_once", &self.at_least_once)
            .field("slot_wait", &self.slot_wait)
            .finish()
    }
}
