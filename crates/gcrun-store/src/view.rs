//! A run as APIs show it (`GET /v1/runs/{id}`, `gcrun runs get`, `gcrun
//! dlq list --json`): named for readers, times in RFC 3339, and decoupled
//! from how the record is stored, so storage can change without breaking
//! a caller. The OpenAPI document is generated from this type.

use gcrun_model::timestamp::rfc3339_ms;
use gcrun_model::{Flavor, RunError, RunId, RunRequestDoc, RunStatus, WebhookStatus};
use serde::Serialize;
use serde_json::Value;

use crate::record::RunRecord;

/// One run.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub run_id: RunId,
    pub status: RunStatus,
    pub flavor: Flavor,
    /// The action or flow id.
    pub definition_id: String,
    /// The request as accepted.
    pub request: RunRequestDoc,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_run_id: Option<String>,
    /// The remote status exactly as Genesys spelled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_status: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// After this the run is `timed_out`.
    pub deadline: String,
    /// From acceptance to the end, once it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    pub polls: u32,
    /// Transient failures retried, at any stage.
    pub retries: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The last `ININ-Correlation-ID` Genesys sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The correlation id the upstream sent with the request
    /// (`X-Correlation-ID`, else `traceparent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_correlation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub outputs: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookView>,
    /// Every transition, oldest first (empty when not read with history).
    pub transitions: Vec<TransitionView>,
    /// Every failed attempt that was retried, oldest first, with Genesys's
    /// correlation id when it sent one (empty when not read with history).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptView>,
}

/// A failed attempt that was retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    /// `submit` or `poll`.
    pub stage: String,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    pub at: String,
}

/// A run's completion webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub status: WebhookStatus,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<String>,
}

/// One lifecycle transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TransitionView {
    /// `null` for the first (`accepted`).
    pub from: Option<RunStatus>,
    pub to: RunStatus,
    pub at: String,
    pub cause: String,
}

impl From<&RunRecord> for RunView {
    fn from(r: &RunRecord) -> Self {
        Self {
            run_id: r.id,
            status: r.status,
            flavor: r.flavor,
            definition_id: r.target.clone(),
            // The webhook URL's query may carry the receiver's token.
            request: r.request.to_shown_doc(),
            remote_run_id: r.remote_id.clone(),
            remote_status: r.remote_status.clone(),
            created_at: rfc3339_ms(r.created_ms),
            updated_at: rfc3339_ms(r.updated_ms),
            submitted_at: r.submitted_ms.map(rfc3339_ms),
            completed_at: r.completed_ms.map(rfc3339_ms),
            deadline: rfc3339_ms(r.deadline_ms),
            duration_seconds: r.duration_ms().map(|ms| ms as f64 / 1000.0),
            polls: r.poll_attempts,
            retries: r.retries,
            last_error: r.last_error.clone(),
            correlation_id: r.correlation_id.clone(),
            upstream_correlation_id: r.upstream_correlation.clone(),
            outputs: r.outputs.clone(),
            error: r.error.clone(),
            webhook: r.webhook.status.map(|status| WebhookView {
                status,
                attempts: r.webhook.attempts,
                last_error: r.webhook.last_error.clone(),
                delivered_at: r.webhook.delivered_ms.map(rfc3339_ms),
            }),
            transitions: r
                .transitions
                .iter()
                .map(|t| TransitionView { from: t.from, to: t.to, at: rfc3339_ms(t.at_ms), cause: t.cause.clone() })
                .collect(),
            attempts: r
                .attempts
                .iter()
                .map(|a| AttemptView {
                    stage: a.stage.clone(),
                    error: a.error.clone(),
                    correlation_id: a.correlation_id.clone(),
                    at: rfc3339_ms(a.at_ms),
                })
                .collect(),
        }
    }
}
