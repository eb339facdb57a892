//! The middleware every request passes: correlation id and stats
//! (outermost), ErrorBody for every error, fault injection, bearer auth.

#![allow(clippy::result_large_err)]

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::error::{error_body, too_many_requests};
use super::{CorrelationId, Dropped};
use crate::state::{Emulator, Fault, Limited};

/// Outermost: assigns the correlation id, records the answer in the stats,
/// and cuts the connection of responses marked [`Dropped`].
pub(super) async fn observe(State(em): State<Emulator>, mut req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().to_string();
    req.extensions_mut().insert(CorrelationId(id.clone()));
    let endpoint = match req.extensions().get::<MatchedPath>() {
        Some(path) => format!("{} {}", req.method(), path.as_str()),
        None => format!("{} (unmatched)", req.method()),
    };
    let mut response = next.run(req).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("inin-correlation-id", value);
    }
    if response.extensions().get::<Dropped>().is_some() {
        em.record_request(endpoint, "dropped".into());
        let (parts, _) = response.into_parts();
        // A body that fails on first read makes hyper abort the connection
        // mid-response: the client sees the answer cut off, as on a real
        // network failure.
        let broken = futures_util::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected drop"))
        });
        let mut parts = parts;
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::from_stream(broken));
    }
    em.record_request(endpoint, response.status().as_u16().to_string());
    response
}

/// Guarantees that every error answer is an ErrorBody, including axum's
/// own rejections (body too large, bad path encoding, ...).
pub(super) async fn ensure_error_body(req: Request, next: Next) -> Response {
    let cid = req.extensions().get::<CorrelationId>().cloned();
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        {
            let (parts, body) = response.into_parts();
            let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
            let message = String::from_utf8_lossy(&text).trim().to_string();
            let message =
                if message.is_empty() { status.canonical_reason().unwrap_or("error").to_string() } else { message };
            let code = match status.as_u16() {
                413 => "request.entity.too.large",
                405 => "method.not.allowed",
                404 => "not.found",
                _ if status.is_server_error() => "internal.server.error",
                _ => "bad.request",
            };
            let mut fixed = error_body(cid.as_ref(), status, code, &message);
            fixed.headers_mut().extend(parts.headers.into_iter().filter_map(|(k, v)| {
                let k = k?;
                (k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH).then_some((k, v))
            }));
            return fixed;
        }
    }
    response
}

/// Fault injection for the Platform API (and OAuth when asked): latency,
/// then 429 or 5xx instead of handling; after handling, a dropped
/// connection or a truncated body instead of the real answer.
pub(super) async fn inject_faults(State(em): State<Emulator>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let faultable = path.starts_with("/api/v2/") || (path == "/oauth/token" && em.faults().oauth);
    if !faultable {
        return next.run(req).await;
    }
    let cid = req.extensions().get::<CorrelationId>().cloned();
    let faults = em.faults();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if em.roll(Fault::TooManyRequests) {
        let limited = Limited {
            retry_after_secs: faults.retry_after_secs,
            allowed: 0,
            count: 0,
            reset_secs: faults.retry_after_secs,
            key: "injected",
        };
        return too_many_requests(cid.as_ref(), limited);
    }
    if em.roll(Fault::ServerError) {
        let status = StatusCode::from_u16(faults.status_5xx).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let code = match status.as_u16() {
            500 => "internal.server.error",
            502 => "bad.gateway",
            504 => "gateway.timeout",
            _ => "service.unavailable",
        };
        return error_body(cid.as_ref(), status, code, "The emulator injected a server error.");
    }
    let mut response = next.run(req).await;
    if response.status().is_success() {
        if em.roll(Fault::Drop) {
            response.extensions_mut().insert(Dropped);
        } else if em.roll(Fault::Malformed) {
            let (mut parts, _) = response.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            return Response::from_parts(parts, Body::from("{\"id\": \"trunc"));
        }
    }
    response
}

/// Bearer-token check for `/api/v2/...`, with Genesys's 401 bodies.
pub(super) async fn authenticate(State(em): State<Emulator>, req: Request, next: Next) -> Response {
    let cid = req.extensions().get::<CorrelationId>().cloned();
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .map(str::to_owned);
    let Some(token) = token else {
        return error_body(
            cid.as_ref(),
            StatusCode::UNAUTHORIZED,
            "authentication.required",
            "No authentication bearer token specified in authorization header.",
        );
    };
    match em.check_token(&token) {
        Err(_) => error_body(cid.as_ref(), StatusCode::UNAUTHORIZED, "bad.credentials", "Invalid login credentials."),
        Ok(Err(limited)) => too_many_requests(cid.as_ref(), limited),
        Ok(Ok(())) => next.run(req).await,
    }
}
