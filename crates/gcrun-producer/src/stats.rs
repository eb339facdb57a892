//! `gcrun stats` and the dashboard's overview: queue depth, how recent
//! runs went, the limiters and retention, from the store's own indexes.
//! Every figure is read in bounded work: the window's runs are a sample
//! of at most `sample` newest runs from the run index, never a scan.

use std::collections::BTreeMap;
use std::time::Duration;

use gcrun_model::{RunStatus, WebhookStatus, timestamp::rfc3339_ms};
use gcrun_queue::Queues;
use gcrun_store::{LimiterConfig, LimiterStatus, PageRequest, RunFilter, Store};
use serde::Serialize;

use crate::operator::OperatorError;

/// Where gcrun stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub at: String,
    pub queues: Vec<QueueStats>,
    /// Runs per status now (the store's counts).
    pub counts: BTreeMap<String, i64>,
    /// Runs in the dead-letter set (rejected or dead).
    pub dead_letters: u64,
    /// Ended runs whose webhook could not be delivered.
    pub dead_webhooks: u64,
    pub window: WindowStats,
    pub limiters: Vec<LimiterView>,
    /// Queues paused and holds standing.
    pub pauses: Vec<crate::operator::PauseView>,
    /// Runs parked by holds.
    pub parked_runs: u64,
    pub retention: Retention,
}

/// One queue's jobs by state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueStats {
    pub name: String,
    pub ready: u64,
    pub scheduled: u64,
    pub in_flight: u64,
    pub dead: u64,
    /// How long the oldest ready job has waited for a worker.
    pub oldest_ready_ms: Option<u64>,
}

/// How the runs accepted in the window went (a sample of the newest).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowStats {
    pub seconds: u64,
    /// Runs looked at: every run accepted in the window, or the newest
    /// `sample` of them when `sampled`.
    pub runs: usize,
    pub sampled: bool,
    /// Of those, per status.
    pub by_status: BTreeMap<String, usize>,
    /// Completed among those that ended (`None`: none ended).
    pub success_rate: Option<f64>,
    /// From acceptance to the end, of those that ended, in seconds.
    pub duration_p50: Option<f64>,
    pub duration_p95: Option<f64>,
    pub duration_p99: Option<f64>,
    pub webhooks_delivered: usize,
    pub webhooks_dead: usize,
    pub webhooks_pending: usize,
    /// Delivered among those whose webhook finished.
    pub webhook_delivery_rate: Option<f64>,
}

/// A limiter: the limits its workers registered and its state now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LimiterView {
    pub limits: serde_json::Value,
    #[serde(flatten)]
    pub status: LimiterStatus,
}

/// What is kept, for how long, and what retention has dropped.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// This process's settings (workers should be given the same).
    pub ended_run_secs: u64,
    pub dead_run_secs: u64,
    pub idempotency_secs: u64,
    pub audit_cap: u64,
    pub audit_entries: u64,
    /// The oldest audit entry still kept.
    pub audit_oldest_at: Option<String>,
    /// Ended runs whose records expired, by status, since the store began.
    pub trimmed: BTreeMap<String, i64>,
}

fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    Some(sorted[i.min(sorted.len() - 1)] as f64 / 1000.0)
}

fn ratio(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

pub(crate) async fn gather(
    operator: &crate::operator::Operator,
    store: &Store,
    queues: &Queues,
    now_ms: u64,
    window: Duration,
    sample: usize,
) -> Result<Stats, OperatorError> {
    let mut queue_stats = Vec::new();
    for name in queues.names.all() {
        let d = queues.depth(name).await?;
        queue_stats.push(QueueStats {
            name: name.to_string(),
            ready: d.ready,
            scheduled: d.scheduled,
            in_flight: d.in_flight,
            dead: d.dead,
            oldest_ready_ms: d.oldest_ready_ms,
        });
    }
    let seconds = window.as_secs();
    let filter = RunFilter { since_ms: Some(now_ms.saturating_sub(window.as_millis() as u64)), ..RunFilter::default() };
    let sample = sample.max(1);
    let page = store
        .runs_page(&filter, &PageRequest { after: None, limit: sample, newest_first: true, budget: sample })
        .await?;
    let mut by_status = BTreeMap::new();
    let (mut ended, mut completed, mut durations) = (0, 0, Vec::new());
    let (mut delivered, mut dead_hooks, mut pending) = (0, 0, 0);
    for r in &page.runs {
        *by_status.entry(r.status.as_str().to_string()).or_insert(0) += 1;
        if r.status.is_terminal() {
            ended += 1;
            completed += usize::from(r.status == RunStatus::Completed);
            durations.extend(r.duration_ms());
        }
        match r.webhook.status {
            Some(WebhookStatus::Delivered) => delivered += 1,
            Some(WebhookStatus::Dead) => dead_hooks += 1,
            Some(WebhookStatus::Pending) => pending += 1,
            _ => {}
        }
    }
    durations.sort_unstable();
    let mut limiters = Vec::new();
    for (name, limits) in store.limiters().await? {
        let status = store.limiter(LimiterConfig { name, ..LimiterConfig::default() }).status().await?;
        limiters.push(LimiterView { limits, status });
    }
    let config = store.config();
    let oldest = store.audit_page(None, None, None, 1).await?;
    Ok(Stats {
        at: rfc3339_ms(now_ms),
        queues: queue_stats,
        counts: store.counts().await?.into_iter().collect(),
        dead_letters: store.dlq_len().await?,
        dead_webhooks: store.webhook_dlq_len().await?,
        window: WindowStats {
            seconds,
            runs: page.runs.len(),
            sampled: page.next.is_some(),
            by_status,
            success_rate: ratio(completed, ended),
            duration_p50: percentile(&durations, 0.50),
            duration_p95: percentile(&durations, 0.95),
            duration_p99: percentile(&durations, 0.99),
            webhooks_delivered: delivered,
            webhooks_dead: dead_hooks,
            webhooks_pending: pending,
            webhook_delivery_rate: ratio(delivered, delivered + dead_hooks),
        },
        limiters,
        pauses: operator.pauses().await?,
        parked_runs: store.parked_len().await?,
        retention: Retention {
            ended_run_secs: config.terminal_retention.as_secs(),
            dead_run_secs: config.dead_retention.as_secs(),
            idempotency_secs: config.idempotency_ttl.as_secs(),
            audit_cap: config.audit_cap,
            audit_entries: store.audit_len().await?,
            audit_oldest_at: oldest.first().map(|e| rfc3339_ms(e.at_ms)),
            trimmed: store.trimmed().await?.into_iter().collect(),
        },
    })
}
