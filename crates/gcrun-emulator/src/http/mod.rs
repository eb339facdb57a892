//! The HTTP face of the emulator: the router here; middleware, the
//! ErrorBody type and extractor, and one module per API area beside it.

mod actions;
mod admin;
mod error;
mod flows;
mod middleware;
mod oauth;
mod runs;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};

use self::actions::{execute_action, get_action, list_actions};
use self::admin::{get_faults, put_faults, reset_stats, revoke_tokens, stats};
use self::error::error_body;
use self::flows::{get_flow_execution, launch_flow};
use self::middleware::{authenticate, ensure_error_body, inject_faults, observe};
use self::oauth::token;
use self::runs::{get_run, submit_run};
use crate::state::Emulator;

/// The correlation id of the request being answered; every response
/// carries it as `ININ-Correlation-ID` and every ErrorBody as `contextId`.
#[derive(Debug, Clone)]
struct CorrelationId(String);

/// Marks a response whose connection is to be cut (fault injection).
#[derive(Debug, Clone, Copy)]
struct Dropped;

/// Largest request body accepted (Genesys's function actions take about
/// 750,000 bytes; a little headroom for the envelope).
const BODY_LIMIT: usize = 1024 * 1024;

/// The whole application.
pub fn router(emulator: Emulator) -> Router {
    let api = Router::new()
        .route("/api/v2/integrations/actions", get(list_actions))
        .route("/api/v2/integrations/actions/{actionId}", get(get_action))
        .route("/api/v2/integrations/actions/{actionId}/execute", post(execute_action))
        .route("/api/v2/actions/runs", post(submit_run))
        .route("/api/v2/actions/runs/{runId}", get(get_run))
        .route("/api/v2/flows/executions", post(launch_flow))
        .route("/api/v2/flows/executions/{flowExecutionId}", get(get_flow_execution))
        .route_layer(axum::middleware::from_fn_with_state(emulator.clone(), authenticate));
    Router::new()
        .route("/oauth/token", post(token))
        .merge(api)
        .route("/emulator/health", get(|| async { "ok" }))
        .route("/emulator/stats", get(stats))
        .route("/emulator/stats/reset", post(reset_stats))
        .route("/emulator/faults", get(get_faults).put(put_faults))
        .route("/emulator/tokens/revoke", post(revoke_tokens))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(emulator.clone(), inject_faults))
        .layer(axum::middleware::from_fn(ensure_error_body))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(emulator.clone(), observe))
        .with_state(emulator)
}

async fn not_found(req: Request) -> Response {
    let cid = req.extensions().get::<CorrelationId>().cloned();
    error_body(cid.as_ref(), StatusCode::NOT_FOUND, "not.found", &format!("No resource at {}", req.uri().path()))
}

async fn method_not_allowed(req: Request) -> Response {
    let cid = req.extensions().get::<CorrelationId>().cloned();
    error_body(
        cid.as_ref(),
        StatusCode::METHOD_NOT_ALLOWED,
        "method.not.allowed",
        &format!("{} is not allowed here", req.method()),
    )
}
