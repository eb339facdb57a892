//! The admin API under `/emulator/`: stats, faults, token revocation.
//! Unauthenticated: bind the emulator to loopback.

#![allow(clippy::result_large_err)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::error::{Cid, error_body, json_response};
use crate::state::Emulator;

pub(super) async fn stats(State(em): State<Emulator>) -> Response {
    json_response(StatusCode::OK, serde_json::to_value(em.stats()).unwrap_or(Value::Null))
}

pub(super) async fn reset_stats(State(em): State<Emulator>) -> StatusCode {
    em.reset_stats();
    StatusCode::NO_CONTENT
}

pub(super) async fn get_faults(State(em): State<Emulator>) -> Response {
    json_response(StatusCode::OK, serde_json::to_value(em.faults()).unwrap_or(Value::Null))
}

pub(super) async fn put_faults(State(em): State<Emulator>, Cid(cid): Cid, body: Bytes) -> Response {
    let faults = match serde_json::from_slice::<crate::config::Faults>(&body) {
        Ok(f) => f,
        Err(e) => {
            return error_body(cid.as_ref(), StatusCode::BAD_REQUEST, "bad.request", &format!("invalid faults: {e}"));
        }
    };
    match em.set_faults(faults) {
        Ok(()) => get_faults(State(em)).await,
        Err(e) => error_body(cid.as_ref(), StatusCode::BAD_REQUEST, "bad.request", &e),
    }
}

pub(super) async fn revoke_tokens(State(em): State<Emulator>) -> StatusCode {
    em.revoke_tokens();
    StatusCode::NO_CONTENT
}
