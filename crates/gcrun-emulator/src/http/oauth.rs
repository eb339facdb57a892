//! `POST /oauth/token`: the client-credentials grant.

#![allow(clippy::result_large_err)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use serde_json::json;

use super::error::json_response;
use crate::state::{Emulator, lock};

/// `POST /oauth/token`: client credentials with HTTP Basic auth.
pub(super) async fn token(State(em): State<Emulator>, headers: HeaderMap, body: Bytes) -> Response {
    let refuse = |status: StatusCode, error: &str, description: &str| {
        lock(&em.0.stats).token_requests_refused += 1;
        json_response(status, json!({"error": error, "description": description, "error_description": description}))
    };
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    let Some((client_id, secret)) = basic.as_deref().and_then(|s| s.split_once(':')) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client credentials are missing: use HTTP Basic authentication",
        );
    };
    if em.0.clients.get(client_id).is_none_or(|expected| expected != secret) {
        return refuse(StatusCode::UNAUTHORIZED, "invalid_client", "client not found or secret invalid");
    }
    let grant = url::form_urlencoded::parse(&body).find(|(k, _)| k == "grant_type").map(|(_, v)| v.into_owned());
    match grant.as_deref() {
        Some("client_credentials") => {}
        Some(other) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("grant type {other} is not supported"),
            );
        }
        None => return refuse(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required"),
    }
    let token = em.issue_token();
    json_response(
        StatusCode::OK,
        json!({"access_token": token, "token_type": "bearer", "expires_in": em.0.token_ttl.as_secs()}),
    )
}
