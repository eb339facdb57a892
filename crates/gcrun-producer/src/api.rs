//! The ingest API's bodies, typed: handlers answer with these, and the
//! OpenAPI document is generated from them (and from the request and run
//! view types), so the document cannot drift from what is served.

use gcrun_model::{RunId, RunRequestDoc, Violation, Violations};
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// A cancel was asked for (202), or the run had already ended (409).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Cancelled {
    pub run_id: RunId,
    /// `cancelling`: the run's next step ends it `cancelled` (at once, for
    /// a run waiting in a queue); else the status it had already ended in.
    pub status: String,
}

/// Why a run is cancelled, recorded with it.
#[derive(Debug, Clone, Default, serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

/// A run was recorded (202), or the idempotency key named one (200).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub run_id: RunId,
    /// The idempotency key named an existing run; nothing new was queued.
    pub existing: bool,
    /// Where the run can be read (`GET`).
    pub location: String,
}

/// The request is invalid: every violation, with a JSON Pointer each.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Invalid {
    /// Always `invalid_request`.
    pub error: String,
    pub message: String,
    pub violations: Vec<Violation>,
}

impl Invalid {
    pub fn new(v: &Violations) -> Self {
        Self { error: "invalid_request".into(), message: v.to_string(), violations: v.iter().cloned().collect() }
    }
}

/// The idempotency key was used for another request (409): the run it
/// names and the digests (SHA-256 of the canonical request) of both.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    pub error: String,
    pub message: String,
    pub run_id: RunId,
    pub existing_digest: String,
    pub request_digest: String,
}

/// Any other refusal: `unauthorized`, `not_found`, `unavailable`, ...
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    pub error: String,
    pub message: String,
}

/// A batch: a JSON array of run requests, or `{"runs": [...]}`.
#[derive(Debug, Clone, ToSchema)]
#[allow(dead_code)] // describes the body; the handler reads it leniently
pub enum Batch {
    List(Vec<RunRequestDoc>),
    Wrapped { runs: Vec<RunRequestDoc> },
}

/// One item of a batch, in input order.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchItem {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<RunId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing: Option<bool>,
    /// `invalid_request` when this item was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
}

/// What a batch did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchResult {
    pub accepted: usize,
    pub rejected: usize,
    pub results: Vec<BatchItem>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The OpenAPI document of the ingest service.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "gcrun ingest",
        description = "Enqueue Genesys Cloud data-action and workflow runs. Every request needs `Authorization: Bearer <token>`."
    ),
    paths(crate::ingest::create_run, crate::ingest::create_batch, crate::ingest::get_run, crate::ingest::cancel_run),
    components(schemas(
        Cancelled,
        CancelRequest,
        RunRequestDoc,
        Accepted,
        Invalid,
        Conflict,
        Problem,
        BatchItem,
        BatchResult,
        gcrun_store::RunView,
        gcrun_store::WebhookView,
        gcrun_store::TransitionView,
        gcrun_model::RunError,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub struct ApiDoc;
