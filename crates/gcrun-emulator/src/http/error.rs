//! Genesys's error answers: every one an ErrorBody whose `contextId` is the
//! request's `ININ-Correlation-ID`, and [`Cid`], the extractor that hands a
//! handler that id.

#![allow(clippy::result_large_err)]

use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use time::format_description::well_known::Rfc3339;

use super::CorrelationId;
use crate::state::Limited;

/// The correlation id of the request being answered, for the handlers'
/// error answers (the outermost middleware assigned it).
#[derive(Debug, Clone)]
pub(super) struct Cid(pub(super) Option<CorrelationId>);

impl<S: Send + Sync> FromRequestParts<S> for Cid {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(Cid(parts.extensions.get::<CorrelationId>().cloned()))
    }
}

pub(super) fn error_body(cid: Option<&CorrelationId>, status: StatusCode, code: &str, message: &str) -> Response {
    error_body_with(cid, status, json!({"code": code, "message": message}))
}

pub(super) fn error_body_with(cid: Option<&CorrelationId>, status: StatusCode, mut body: Value) -> Response {
    if let Some(obj) = body.as_object_mut() {
        obj.insert("status".into(), json!(status.as_u16()));
        if let Some(cid) = cid {
            obj.insert("contextId".into(), json!(cid.0));
        }
    }
    (status, axum::Json(body)).into_response()
}

pub(super) fn too_many_requests(cid: Option<&CorrelationId>, l: Limited) -> Response {
    let body = json!({
        "code": "too.many.requests.retry.after",
        "message": format!("Rate limit exceeded the maximum. Retry the request in [{}] seconds", l.retry_after_secs),
        "messageWithParams": "Rate limit exceeded the maximum. Retry the request in [{retryAfter}] seconds",
        "messageParams": {"retryAfter": l.retry_after_secs.to_string()},
        "limit": {"key": l.key, "namespace": "integrations.actions", "value": l.allowed},
    });
    let mut response = error_body_with(cid, StatusCode::TOO_MANY_REQUESTS, body);
    let headers = response.headers_mut();
    for (name, value) in [
        ("retry-after", l.retry_after_secs),
        ("inin-ratelimit-allowed", l.allowed),
        ("inin-ratelimit-count", l.count),
        ("inin-ratelimit-reset", l.reset_secs),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
    response
}

pub(super) fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

pub(super) fn parse_object(cid: Option<&CorrelationId>, body: &Bytes) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => {
            Err(error_body(cid, StatusCode::BAD_REQUEST, "bad.request", "The request body must be a JSON object."))
        }
        Err(e) => Err(error_body(
            cid,
            StatusCode::BAD_REQUEST,
            "bad.request",
            &format!("The request could not be understood by the server due to malformed syntax: {e}"),
        )),
    }
}

pub(super) fn invalid_inputs(cid: Option<&CorrelationId>, violations: &gcrun_model::Violations) -> Response {
    let details: Vec<Value> = violations
        .iter()
        .map(|v| json!({"errorCode": v.code, "fieldName": v.path.trim_start_matches("/inputs/")}))
        .collect();
    let messages: Vec<String> = violations.iter().map(ToString::to_string).collect();
    error_body_with(
        cid,
        StatusCode::BAD_REQUEST,
        json!({
            "code": "bad.request",
            "message": format!("The inputs do not match the action's input contract: {}", messages.join("; ")),
            "details": details,
        }),
    )
}

pub(super) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Genesys's 404 for an entity: `not.found` with the id as `entityId`.
pub(super) fn entity_not_found(cid: Option<&CorrelationId>, what: &str, id: &str) -> Response {
    error_body_with(
        cid,
        StatusCode::NOT_FOUND,
        json!({"code": "not.found", "message": format!("{what} {id} not found"), "entityId": id}),
    )
}

pub(super) fn unknown_action(cid: Option<&CorrelationId>, id: &str) -> Response {
    entity_not_found(cid, "Action", id)
}
