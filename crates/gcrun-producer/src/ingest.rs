//! The HTTP ingest service: upstream systems that are not Rust post runs
//! here. Bearer-token auth (tokens from configuration, compared in constant
//! time), a body size limit, JSON errors that list every violation, and an
//! OpenAPI document. Nothing reaches Redis for a request that fails auth or
//! validation.

// Handlers bail out with a finished `Response`; it is built once per
// request, so its size on the error path does not matter.
#![allow(clippy::result_large_err)]

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gcrun_model::{RunId, RunRequestDoc, Violations};
use gcrun_store::RunView;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use utoipa::OpenApi;

use crate::api::{Accepted, ApiDoc, Batch, BatchItem, BatchResult, Invalid, Problem};
use crate::{Producer, ProducerError};

/// Ingest settings.
#[derive(Clone)]
pub struct IngestConfig {
    /// Accepted bearer tokens. Empty means no request is accepted: auth is
    /// never silently off.
    pub tokens: Vec<SecretString>,
    /// Largest request body, in bytes.
    pub body_limit: usize,
}

impl std::fmt::Debug for IngestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestConfig")
            .field("tokens", &format!("[{} redacted]", self.tokens.len()))
            .field("body_limit", &self.body_limit)
            .finish()
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self { tokens: Vec::new(), body_limit: 8 * 1024 * 1024 }
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    producer: Producer,
    config: Arc<IngestConfig>,
}

/// The ingest application.
pub fn router(producer: Producer, config: IngestConfig) -> Router {
    let limit = config.body_limit;
    let state = AppState { producer, config: Arc::new(config) };
    let api = Router::new()
        .route("/v1/runs", post(create_run))
        .route("/v1/runs/batch", post(create_batch))
        .route("/v1/runs/{id}", get(get_run))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .merge(api)
        .route("/v1/openapi.json", get(openapi))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves ingest on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    producer: Producer,
    config: IngestConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(producer, config)).with_graceful_shutdown(shutdown).await
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(Problem { error: code.into(), message: message.into() })).into_response()
}

fn invalid(v: &Violations) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(Invalid::new(v))).into_response()
}

fn internal(e: &ProducerError) -> Response {
    tracing::error!(error = %e, "ingest could not enqueue");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the queue is unavailable; retry with the same idempotency key",
    )
}

/// Byte-wise comparison whose time does not depend on where the inputs
/// differ (only on their lengths).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let ok = given.is_some_and(|g| {
        state.config.tokens.iter().any(|t| constant_time_eq(t.expose_secret().as_bytes(), g.as_bytes()))
    });
    if !ok {
        let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    }
    next.run(req).await
}

fn parse_body(body: &Bytes) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| {
        let v = Violations(vec![gcrun_model::Violation::new(
            "",
            "invalid_json",
            format!("request body is not valid JSON: {e}"),
        )]);
        invalid(&v)
    })
}

/// Enqueue one run.
#[utoipa::path(
    post,
    path = "/v1/runs",
    request_body = RunRequestDoc,
    responses(
        (status = 202, description = "Accepted; `Location` names the run", body = Accepted),
        (status = 200, description = "The idempotency key named an existing run", body = Accepted),
        (status = 400, description = "Invalid request; every violation listed", body = Invalid),
        (status = 401, description = "Missing or invalid bearer token", body = Problem),
        (status = 413, description = "Body too large"),
        (status = 503, description = "Queue unavailable; retry with the same idempotency key", body = Problem),
    )
)]
pub(crate) async fn create_run(State(state): State<AppState>, body: Bytes) -> Response {
    let doc = match parse_body(&body) {
        Ok(doc) => doc,
        Err(r) => return r,
    };
    match state.producer.enqueue_value(&doc).await {
        Ok(e) => {
            let location = format!("/v1/runs/{}", e.run_id);
            let mut headers = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&location) {
                headers.insert(header::LOCATION, v);
            }
            let status = if e.existing { StatusCode::OK } else { StatusCode::ACCEPTED };
            (status, headers, axum::Json(Accepted { run_id: e.run_id, existing: e.existing, location })).into_response()
        }
        Err(ProducerError::Invalid(v)) => invalid(&v),
        Err(e) => internal(&e),
    }
}

/// Enqueue many runs; each item is checked on its own.
#[utoipa::path(
    post,
    path = "/v1/runs/batch",
    request_body = Batch,
    responses(
        (status = 202, description = "Per-item results, in input order", body = BatchResult),
        (status = 400, description = "Nothing valid in the batch, or a bad envelope", body = BatchResult),
        (status = 401, description = "Missing or invalid bearer token", body = Problem),
    )
)]
pub(crate) async fn create_batch(State(state): State<AppState>, body: Bytes) -> Response {
    let doc = match parse_body(&body) {
        Ok(doc) => doc,
        Err(r) => return r,
    };
    let items = match doc {
        Value::Array(items) => items,
        Value::Object(mut o) => match o.remove("runs") {
            Some(Value::Array(items)) => items,
            _ => {
                return error(StatusCode::BAD_REQUEST, "invalid_request", "expected {\"runs\": [...]} or a JSON array");
            }
        },
        _ => return error(StatusCode::BAD_REQUEST, "invalid_request", "expected {\"runs\": [...]} or a JSON array"),
    };
    let max = state.producer.config().max_batch;
    if items.is_empty() || items.len() > max {
        return error(StatusCode::BAD_REQUEST, "invalid_request", &format!("a batch holds 1 to {max} runs"));
    }
    match state.producer.enqueue_batch(&items).await {
        Ok(results) => {
            let accepted = results.iter().filter(|r| r.is_ok()).count();
            let out: Vec<BatchItem> = results
                .into_iter()
                .enumerate()
                .map(|(index, r)| match r {
                    Ok(e) => BatchItem {
                        index,
                        run_id: Some(e.run_id),
                        existing: Some(e.existing),
                        error: None,
                        violations: Vec::new(),
                    },
                    Err(v) => BatchItem {
                        index,
                        run_id: None,
                        existing: None,
                        error: Some("invalid_request".into()),
                        violations: v.into_iter().collect(),
                    },
                })
                .collect();
            let status = if accepted == 0 { StatusCode::BAD_REQUEST } else { StatusCode::ACCEPTED };
            let rejected = out.len() - accepted;
            (status, axum::Json(BatchResult { accepted, rejected, results: out })).into_response()
        }
        Err(e) => internal(&e),
    }
}

/// A run with its transitions.
#[utoipa::path(
    get,
    path = "/v1/runs/{id}",
    params(("id" = String, Path, format = Uuid, description = "The run id")),
    responses(
        (status = 200, description = "The run", body = RunView),
        (status = 404, description = "No such run", body = Problem),
        (status = 401, description = "Missing or invalid bearer token", body = Problem),
    )
)]
pub(crate) async fn get_run(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<RunId>() else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such run");
    };
    match state.producer.store().get_run_with_history(&id).await {
        Ok(Some(record)) => axum::Json(RunView::from(&record)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no such run"),
        Err(e) => internal(&ProducerError::Store(e)),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

/// The OpenAPI 3.1 document of this service, generated from the handlers'
/// annotations and the request, response and run view types.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}
