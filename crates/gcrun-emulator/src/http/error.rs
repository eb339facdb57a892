//! Genesys's error answers: [`ErrorReply`], an ErrorBody whose `contextId`
//! is the request's `ININ-Correlation-ID`, and [`Cid`], the extractor that
//! hands a handler that id.

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

/// One Genesys error answer: an ErrorBody (`code`, `message`, `status`,
/// `contextId` = the request's correlation id, and whatever else the case
/// needs) with its status and headers. The one way handlers and middleware
/// answer an error, so no answer can miss a field the reference requires.
#[derive(Debug, Clone)]
pub(super) struct ErrorReply {
    status: StatusCode,
    body: Map<String, Value>,
    headers: Vec<(&'static str, HeaderValue)>,
}

impl ErrorReply {
    pub(super) fn new(cid: Option<&CorrelationId>, status: StatusCode, code: &str, message: &str) -> Self {
        let mut body = Map::new();
        body.insert("code".into(), json!(code));
        body.insert("message".into(), json!(message));
        Self::from_body(cid, status, body)
    }

    fn from_body(cid: Option<&CorrelationId>, status: StatusCode, mut body: Map<String, Value>) -> Self {
        body.insert("status".into(), json!(status.as_u16()));
        if let Some(cid) = cid {
            body.insert("contextId".into(), json!(cid.0));
        }
        Self { status, body, headers: Vec::new() }
    }

    /// An extra ErrorBody field (`entityId`, `details`, `limit`, ...).
    pub(super) fn field(mut self, key: &str, value: Value) -> Self {
        self.body.insert(key.into(), value);
        self
    }

    pub(super) fn header(mut self, name: &'static str, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for ErrorReply {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(Value::Object(self.body))).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

pub(super) fn error_body(cid: Option<&CorrelationId>, status: StatusCode, code: &str, message: &str) -> Response {
    ErrorReply::new(cid, status, code, message).into_response()
}

pub(super) fn error_body_with(cid: Option<&CorrelationId>, status: StatusCode, body: Value) -> Response {
    let Value::Object(body) = body else { return error_body(cid, status, "error", "error") };
    ErrorReply::from_body(cid, status, body).into_response()
}

pub(super) fn too_many_requests(cid: Option<&CorrelationId>, l: Limited) -> Response {
    let message = format!("Rate limit exceeded the maximum. Retry the request in [{}] seconds", l.retry_after_secs);
    ErrorReply::new(cid, StatusCode::TOO_MANY_REQUESTS, "too.many.requests.retry.after", &message)
        .field(
            "messageWithParams",
            json!("Rate limit exceeded the maximum. Retry the request in [{retryAfter}] seconds"),
        )
        .field("messageParams", json!({"retryAfter": l.retry_after_secs.to_string()}))
        .field("limit", json!({"key": l.key, "namespace": "integrations.actions", "value": l.allowed}))
        .header("retry-after", HeaderValue::from(l.retry_after_secs))
        .header("inin-ratelimit-allowed", HeaderValue::from(l.allowed))
        .header("inin-ratelimit-count", HeaderValue::from(l.count))
        .header("inin-ratelimit-reset", HeaderValue::from(l.reset_secs))
        .into_response()
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
    let message = format!("The inputs do not match the action's input contract: {}", messages.join("; "));
    ErrorReply::new(cid, StatusCode::BAD_REQUEST, "bad.request", &message)
        .field("details", json!(details))
        .into_response()
}

pub(super) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Genesys's 404 for an entity: `not.found` with the id as `entityId`.
pub(super) fn entity_not_found(cid: Option<&CorrelationId>, what: &str, id: &str) -> Response {
    ErrorReply::new(cid, StatusCode::NOT_FOUND, "not.found", &format!("{what} {id} not found"))
        .field("entityId", json!(id))
        .into_response()
}

pub(super) fn unknown_action(cid: Option<&CorrelationId>, id: &str) -> Response {
    entity_not_found(cid, "Action", id)
}
