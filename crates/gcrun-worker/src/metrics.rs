//! Prometheus metrics (prometheus-client, the Prometheus project's own Rust
//! client). Counters are updated by the handlers; queue depths and the
//! dead-letter size are read from Redis when `/metrics` is scraped, since
//! apalis-redis keeps no depth gauges.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub flavor: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlavorLabels {
    pub flavor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub endpoint: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub stage: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueNameLabels {
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Every metric the worker exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub runs: Family<RunLabels, Counter>,
    pub run_duration: Family<FlavorLabels, Histogram>,
    pub api_requests: Family<ApiLabels, Counter>,
    pub retries: Family<RetryLabels, Counter>,
    pub queue_depth: Family<QueueLabels, Gauge>,
    pub queue_oldest_ready: Family<QueueNameLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub dead_letter_size: Gauge,
    pub webhooks: Family<OutcomeLabels, Counter>,
    pub limiter_waits: Family<ReasonLabels, Counter>,
    /// Concurrency slots of the shared limiter held now, and its maximum:
    /// their ratio is how close the org is to its concurrency limit.
    pub limiter_slots_held: Gauge,
    pub limiter_slots_max: Gauge,
    /// How much longer a 429 pauses every worker (0: no pause).
    pub limiter_paused: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub dead_webhooks: Gauge,
    /// Queues paused and holds standing, and the runs the holds parked.
    pub pauses: Gauge,
    pub parked_runs: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The default tenant's metrics: no tenant label, as single-org
    /// releases had.
    pub fn new() -> Self {
        Self::for_tenant(&gcrun_model::Tenant::default())
    }

    /// Metrics of a worker serving `tenant`: every series labelled with it
    /// (unless it is the default tenant).
    pub fn for_tenant(tenant: &gcrun_model::Tenant) -> Self {
        let mut registry = if tenant.is_default() {
            Registry::with_prefix("gcrun")
        } else {
            let label = (std::borrow::Cow::Borrowed("tenant"), std::borrow::Cow::Owned(tenant.to_string()));
            Registry::with_prefix_and_labels("gcrun", std::iter::once(label))
        };
        let runs = Family::<RunLabels, Counter>::default();
        registry.register("runs", "Runs that reached a terminal state, by flavor and outcome", runs.clone());
        let run_duration = Family::<FlavorLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.25, 2.0, 14))
        });
        registry.register("run_duration_seconds", "Time from acceptance to terminal state", run_duration.clone());
        let api_requests = Family::<ApiLabels, Counter>::default();
        registry.register("api_requests", "Genesys Cloud API calls by endpoint and status", api_requests.clone());
        let retries = Family::<RetryLabels, Counter>::default();
        registry.register("retries", "Retries scheduled, by stage and reason", retries.clone());
        let queue_depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Jobs per queue and state (ready, scheduled, in_flight, done, dead)",
            queue_depth.clone(),
        );
        let queue_oldest_ready = Family::<QueueNameLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "queue_oldest_ready_seconds",
            "How long the oldest ready job of each queue has waited for a worker (0 when none waits)",
            queue_oldest_ready.clone(),
        );
        let dead_letter_size = Gauge::default();
        registry.register("dead_letter_size", "Runs in the dead-letter set", dead_letter_size.clone());
        let webhooks = Family::<OutcomeLabels, Counter>::default();
        registry.register("webhooks", "Webhook deliveries by outcome (delivered, retried, dead)", webhooks.clone());
        let limiter_waits = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "limiter_waits",
            "Submits rescheduled by the shared limiter, by reason",
            limiter_waits.clone(),
        );
        let limiter_slots_held = Gauge::default();
        registry.register(
            "limiter_slots_held",
            "Concurrency slots of the shared limiter held now (all workers)",
            limiter_slots_held.clone(),
        );
        let limiter_slots_max = Gauge::default();
        registry.register("limiter_slots_max", "The shared limiter's concurrency maximum", limiter_slots_max.clone());
        let limiter_paused = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "limiter_paused_seconds",
            "How much longer a 429's Retry-After pauses every worker (0: no pause)",
            limiter_paused.clone(),
        );
        let pauses = Gauge::default();
        registry.register("pauses", "Queues paused and flavor or action holds standing (operators')", pauses.clone());
        let parked_runs = Gauge::default();
        registry.register("parked_runs", "Runs a hold stopped before their submit", parked_runs.clone());
        let dead_webhooks = Gauge::default();
        registry.register("dead_webhooks", "Ended runs whose webhook could not be delivered", dead_webhooks.clone());
        Self {
            registry: Arc::new(registry),
            runs,
            run_duration,
            api_requests,
            retries,
            queue_depth,
            queue_oldest_ready,
            dead_letter_size,
            webhooks,
            limiter_waits,
            limiter_slots_held,
            limiter_slots_max,
            limiter_paused,
            dead_webhooks,
            pauses,
            parked_runs,
        }
    }

    pub fn api(&self, endpoint: &str, status: &str) {
        self.api_requests.get_or_create(&ApiLabels { endpoint: endpoint.into(), status: status.into() }).inc();
    }

    pub fn retry(&self, stage: &str, reason: &str) {
        self.retries.get_or_create(&RetryLabels { stage: stage.into(), reason: reason.into() }).inc();
    }

    pub fn webhook(&self, outcome: &str) {
        self.webhooks.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
    }

    pub fn limiter_wait(&self, reason: &str) {
        self.limiter_waits.get_or_create(&ReasonLabels { reason: reason.into() }).inc();
    }

    pub fn run_ended(&self, flavor: &str, outcome: &str, duration_s: Option<f64>) {
        self.runs.get_or_create(&RunLabels { flavor: flavor.into(), outcome: outcome.into() }).inc();
        if let Some(d) = duration_s {
            self.run_duration.get_or_create(&FlavorLabels { flavor: flavor.into() }).observe(d);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The endpoint label of a flavor's submit call.
pub fn submit_endpoint(flavor: gcrun_model::Flavor) -> &'static str {
    match flavor {
        gcrun_model::Flavor::Runs => "POST /api/v2/actions/runs",
        gcrun_model::Flavor::Execute => "POST /api/v2/integrations/actions/{actionId}/execute",
        gcrun_model::Flavor::Workflow => "POST /api/v2/flows/executions",
    }
}

/// The endpoint label of a flavor's status call.
pub fn status_endpoint(flavor: gcrun_model::Flavor) -> &'static str {
    match flavor {
        gcrun_model::Flavor::Runs => "GET /api/v2/actions/runs/{runId}",
        gcrun_model::Flavor::Execute => "status (execute)",
        gcrun_model::Flavor::Workflow => "GET /api/v2/flows/executions/{flowExecutionId}",
    }
}

/// The status label of a call's result.
pub fn result_label<T>(result: &Result<T, gcrun_genesys::ApiError>) -> String {
    result.as_ref().map_or_else(|e| e.label(), |_| "2xx".into())
}
