//! The HTTP ingest service: upstream systems that are not Rust post runs
//! here. Each bearer token is a named client (tokens compared in constant
//! time): a client reads only its own runs, its idempotency keys are its
//! own, and it has a rate limit of its own (429 with `Retry-After`). A body
//! size limit, a time limit per request (reading the body included), JSON
//! errors that list every violation, and an OpenAPI document. Nothing
//! reaches Redis for a request that fails auth, the rate limit or
//! validation.

// Handlers bail out with a finished `Response`; it is built once per
// request, so its size on the error path does not matter.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gcrun_model::{RunId, RunRequestDoc, Tenant, Violations};
use gcrun_store::{RunView, Store};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use utoipa::OpenApi;

use crate::api::{
    Accepted, ApiDoc, Batch, BatchItem, BatchResult, CancelRequest, Cancelled, Conflict, Invalid, Problem,
};
use crate::{Producer, ProducerError, Upstream};

/// One upstream system: its name (in the records of its runs, in logs)
/// and its bearer token (never shown).
#[derive(Clone)]
pub struct IngestClient {
    pub name: String,
    pub token: SecretString,
    /// The tenants it may use, the first when a request names none; none
    /// listed: the ingest's own tenant (its store's, `GCRUN_TENANT`).
    pub tenants: Vec<Tenant>,
}

impl std::fmt::Debug for IngestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestClient")
            .field("name", &self.name)
            .field("tenants", &self.tenants)
            .field("token", &"[redacted]")
            .finish()
    }
}

impl IngestClient {
    /// `name=token`, or `name@tenant+tenant=token` for a client bound to
    /// those tenants (else to the ingest's own tenant); a bare token is client
    /// `client<n>` (`n` its position, from 1). Names are letters, digits,
    /// `_` and `-`, so they can name key spaces.
    pub fn parse(entry: &str, n: usize) -> Result<Self, String> {
        let entry = entry.trim();
        let (name, token) = match entry.split_once('=') {
            Some((name, token)) => (name.trim().to_string(), token.trim()),
            None => (format!("client{n}"), entry),
        };
        let (name, tenants) = match name.split_once('@') {
            Some((name, list)) => {
                let tenants = list
                    .split('+')
                    .map(|t| Tenant::parse(t.trim()).map_err(|e| format!("ingest client {}: {e}", name.trim())))
                    .collect::<Result<Vec<_>, _>>()?;
                (name.trim().to_string(), tenants)
            }
            None => (name, Vec::new()),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(format!("ingest client {n}: the name must be letters, digits, '_' or '-'"));
        }
        if token.is_empty() {
            return Err(format!("ingest client {name} has no token"));
        }
        Ok(Self { name, token: SecretString::from(token.to_string()), tenants })
    }
}

/// The clients of a `GCRUN_INGEST_TOKENS` value: comma-separated
/// `name=token` (a bare token is `client<n>`), each name once.
pub fn parse_clients(text: &str) -> Result<Vec<IngestClient>, String> {
    let clients = text
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .enumerate()
        .map(|(i, t)| IngestClient::parse(t, i + 1))
        .collect::<Result<Vec<_>, String>>()?;
    if clients.is_empty() {
        return Err("no token given".into());
    }
    let mut names: Vec<&str> = clients.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("client {} is named twice", w[0]));
    }
    Ok(clients)
}

/// Ingest settings.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// The clients and their tokens. Empty means no request is accepted:
    /// auth is never silently off.
    pub clients: Vec<IngestClient>,
    /// The clients from a file (a mounted Secret), read again when it
    /// changes so tokens rotate with no restart; when set, `clients` is
    /// not used. A file that stops parsing refuses every request (503)
    /// rather than keep old tokens alive.
    pub clients_from: Option<Arc<gcrun_secrets::Parsed<Vec<IngestClient>>>>,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Requests a minute each client may make to this process (a burst of
    /// a tenth of it); 0: no limit.
    pub rate_per_minute: u32,
    /// Longest a request may take, reading its body included (a slow
    /// sender is cut off with 408).
    pub request_timeout: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            clients: Vec::new(),
            clients_from: None,
            body_limit: 8 * 1024 * 1024,
            rate_per_minute: 6_000,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The authenticated client of a request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    name: String,
    tenants: Vec<Tenant>,
}

/// The header a request names its tenant in (absent: the client's first).
pub const TENANT_HEADER: &str = "gcrun-tenant";

impl Caller {
    /// The tenant a request is for: the one its `Gcrun-Tenant` header
    /// names, which must be one of the client's (403), or the client's
    /// first.
    fn tenant(&self, headers: &HeaderMap) -> Result<Tenant, Response> {
        let Some(v) = headers.get(TENANT_HEADER) else {
            return Ok(self.tenants.first().cloned().unwrap_or_default());
        };
        let named = v.to_str().ok().and_then(|s| Tenant::parse(s.trim()).ok());
        match named {
            Some(t) if self.tenants.contains(&t) => Ok(t),
            Some(_) => Err(error(StatusCode::FORBIDDEN, "tenant_forbidden", "this client may not use that tenant")),
            None => Err(invalid(&Violations(vec![gcrun_model::Violation::new(
                "/headers/gcrun-tenant",
                "format",
                "Gcrun-Tenant must be a tenant name: 1 to 32 of a-z, 0-9 and '-'",
            )]))),
        }
    }

    /// The tenants to look a run up in: the named one, or each of the
    /// client's.
    fn lookup_tenants(&self, headers: &HeaderMap) -> Result<Vec<Tenant>, Response> {
        if headers.contains_key(TENANT_HEADER) { Ok(vec![self.tenant(headers)?]) } else { Ok(self.tenants.clone()) }
    }
}

#[derive(Clone)]
pub(crate) struct AppState {
    producer: Producer,
    config: Arc<IngestConfig>,
    /// Per client: the GCRA theoretical arrival time of its next request.
    rates: Arc<Mutex<HashMap<String, Instant>>>,
}

impl AppState {
    /// `Err(wait)`: the client is over its rate; it may ask again then.
    fn admit(&self, client: &str) -> Result<(), Duration> {
        let rate = self.config.rate_per_minute;
        if rate == 0 {
            return Ok(());
        }
        let interval = Duration::from_secs(60) / rate;
        let tolerance = interval * (rate / 10).max(1);
        let now = Instant::now();
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        let tat = rates.get(client).copied().unwrap_or(now).max(now);
        let ahead = tat - now;
        if ahead > tolerance {
            return Err(ahead - tolerance);
        }
        rates.insert(client.to_string(), tat + interval);
        Ok(())
    }
}

/// The longest a `GET /v1/runs/{id}?wait=` waits.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// `GET /v1/runs/{id}` query.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct WaitQuery {
    /// Seconds to wait for the run to end before answering.
    wait: Option<u64>,
}

/// The ingest application.
pub fn router(producer: Producer, config: IngestConfig) -> Router {
    let limit = config.body_limit;
    let timeout = config.request_timeout;
    let state = AppState { producer, config: Arc::new(config), rates: Arc::new(Mutex::new(HashMap::new())) };
    let api = Router::new()
        .route("/v1/runs", post(create_run))
        .route("/v1/runs/batch", post(create_batch))
        .route("/v1/runs/{id}", get(get_run))
        .route("/v1/runs/{id}/cancel", post(cancel_run))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .merge(api)
        .route("/v1/openapi.json", get(openapi))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(move |req: Request, next: Next| async move {
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(response) => response,
                Err(_) => error(StatusCode::REQUEST_TIMEOUT, "timeout", "the request took too long to arrive"),
            }
        }))
        .with_state(state)
}

/// Serves ingest on `listener` until `shutdown` completes.
///
/// Its own accept loop rather than `axum::serve`, which installs no timer,
/// leaving hyper's header read timeout inert: here every connection must
/// send a whole request head within the request timeout (a client that
/// dribbles its headers is cut off), and the router's own timeout covers
/// the body. On shutdown, connections finish the request in hand.
pub async fn serve(
    listener: tokio::net::TcpListener,
    producer: Producer,
    config: IngestConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let header_timeout = config.request_timeout;
    serve_app(listener, router(producer, config), header_timeout, shutdown).await
}

/// [`serve`] for an application the caller composed: ingest's
/// [`router`] merged with the operators' dashboard, say.
pub async fn serve_app(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause, go on.
                    tracing::warn!(error = %e, "ingest could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    Ok(())
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

async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    // Every token is compared, so the time taken does not tell which one
    // (or whether any) matched.
    let mut caller: Option<(String, Vec<Tenant>)> = None;
    let live;
    let clients: &[IngestClient] = match &state.config.clients_from {
        Some(file) => match file.current() {
            Ok(list) => {
                live = list;
                &live
            }
            Err(e) => {
                tracing::error!(error = %e, "the ingest clients' file cannot be used");
                return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the client list cannot be read");
            }
        },
        None => &state.config.clients,
    };
    if let Some(g) = given {
        for c in clients {
            if constant_time_eq(c.token.expose_secret().as_bytes(), g.as_bytes()) {
                let tenants =
                    if c.tenants.is_empty() { vec![state.producer.tenant().clone()] } else { c.tenants.clone() };
                caller = Some((c.name.clone(), tenants));
            }
        }
    }
    let Some((caller, tenants)) = caller else {
        let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized", "a valid bearer token is required");
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    };
    if let Err(wait) = state.admit(&caller) {
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "this client is over its request rate");
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    req.extensions_mut().insert(Caller { name: caller, tenants });
    next.run(req).await
}

/// The upstream's correlation id: `X-Correlation-ID` (1 to 128 visible
/// ASCII characters, else 400), or else a W3C `traceparent` (one that is
/// not well formed is ignored, as the W3C asks of receivers).
fn correlation(headers: &HeaderMap) -> Result<Option<String>, Response> {
    if let Some(v) = headers.get("x-correlation-id") {
        let ok = v.to_str().ok().filter(|s| (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic()));
        return match ok {
            Some(s) => Ok(Some(s.to_string())),
            None => Err(invalid(&Violations(vec![gcrun_model::Violation::new(
                "/headers/x-correlation-id",
                "format",
                "X-Correlation-ID must be 1 to 128 visible ASCII characters",
            )]))),
        };
    }
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok()).map(str::trim).filter(|t| {
        let parts: Vec<&str> = t.split('-').collect();
        let hex =
            |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        parts.len() == 4
            && hex(parts[0], 2)
            && parts[0] != "ff"
            && hex(parts[1], 32)
            && parts[1].bytes().any(|b| b != b'0')
            && hex(parts[2], 16)
            && parts[2].bytes().any(|b| b != b'0')
            && hex(parts[3], 2)
    });
    Ok(traceparent.map(str::to_owned))
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
    params(
        ("X-Correlation-ID" = Option<String>, Header, description = "Your correlation id, kept with the run: in its record, logs, first audit entry and webhook (1 to 128 visible ASCII characters)"),
        ("traceparent" = Option<String>, Header, description = "A W3C trace context, kept as the correlation id when X-Correlation-ID is absent"),
        ("Gcrun-Tenant" = Option<String>, Header, description = "The tenant (Genesys org) the run is for: one of this client's; absent, the client's first"),
    ),
    responses(
        (status = 202, description = "Accepted; `Location` names the run", body = Accepted),
        (status = 200, description = "The idempotency key named an existing run", body = Accepted),
        (status = 400, description = "Invalid request; every violation listed", body = Invalid),
        (status = 401, description = "Missing or invalid bearer token", body = Problem),
        (status = 403, description = "The Gcrun-Tenant header names a tenant this client may not use", body = Problem),
        (status = 408, description = "The request took too long to arrive", body = Problem),
        (status = 409, description = "The idempotency key names a run with another request; both digests", body = Conflict),
        (status = 413, description = "Body too large"),
        (status = 429, description = "Over this client's rate; `Retry-After` says when to ask again", body = Problem),
        (status = 503, description = "Queue unavailable; retry with the same idempotency key", body = Problem),
    )
)]
pub(crate) async fn create_run(
    State(state): State<AppState>,
    axum::Extension(who): axum::Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let correlation = match correlation(&headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let producer = match who.tenant(&headers) {
        Ok(t) => state.producer.for_tenant(&t),
        Err(r) => return r,
    };
    let caller = who.name;
    let doc = match parse_body(&body) {
        Ok(doc) => doc,
        Err(r) => return r,
    };
    let upstream = Upstream { client: Some(&caller), correlation: correlation.as_deref() };
    match producer.enqueue_value_from(upstream, &doc).await {
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
        Err(ProducerError::Conflict { run_id, existing_digest, request_digest }) => (
            StatusCode::CONFLICT,
            axum::Json(Conflict {
                error: "idempotency_conflict".into(),
                message: "the idempotency key was used for another request".into(),
                run_id,
                existing_digest,
                request_digest,
            }),
        )
            .into_response(),
        Err(e) => internal(&e),
    }
}

/// Enqueue many runs; each item is checked on its own.
#[utoipa::path(
    post,
    path = "/v1/runs/batch",
    request_body = Batch,
    params(
        ("X-Correlation-ID" = Option<String>, Header, description = "Your correlation id, kept with the run: in its record, logs, first audit entry and webhook (1 to 128 visible ASCII characters)"),
        ("traceparent" = Option<String>, Header, description = "A W3C trace context, kept as the correlation id when X-Correlation-ID is absent"),
        ("Gcrun-Tenant" = Option<String>, Header, description = "The tenant (Genesys org) the run is for: one of this client's; absent, the client's first"),
    ),
    responses(
        (status = 202, description = "Per-item results, in input order", body = BatchResult),
        (status = 400, description = "Nothing valid in the batch, or a bad envelope", body = BatchResult),
        (status = 401, description = "Missing or invalid bearer token", body = Problem),
        (status = 403, description = "The Gcrun-Tenant header names a tenant this client may not use", body = Problem),
        (status = 429, description = "Over this client's rate", body = Problem),
    )
)]
pub(crate) async fn create_batch(
    State(state): State<AppState>,
    axum::Extension(who): axum::Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let correlation = match correlation(&headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let producer = match who.tenant(&headers) {
        Ok(t) => state.producer.for_tenant(&t),
        Err(r) => return r,
    };
    let caller = who.name;
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
    let upstream = Upstream { client: Some(&caller), correlation: correlation.as_deref() };
    match producer.enqueue_batch_from(upstream, &items).await {
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
    params(
        ("id" = String, Path, format = Uuid, description = "The run id"),
        ("wait" = Option<u64>, Query, description = "Seconds to wait for the run to end before answering (long-poll; at most 60, and under the request timeout)"),
        ("Gcrun-Tenant" = Option<String>, Header, description = "The tenant to look in; absent, each of this client's"),
    ),
    responses(
        (status = 200, description = "The run", body = RunView),
        (status = 404, description = "No such run (or not this client's)", body = Problem),
        (status = 401, description = "Missing or invalid bearer token", body = Problem),
        (status = 403, description = "The Gcrun-Tenant header names a tenant this client may not use", body = Problem),
    )
)]
pub(crate) async fn get_run(
    State(state): State<AppState>,
    axum::Extension(who): axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<WaitQuery>,
) -> Response {
    let Ok(id) = id.parse::<RunId>() else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such run");
    };
    let store = match find_tenant(&state, &who, &headers, &id).await {
        Ok(Some(store)) => store,
        Ok(None) => return error(StatusCode::NOT_FOUND, "not_found", "no such run"),
        Err(r) => return r,
    };
    let caller = who.name;
    // Long-poll: answer once the run has ended, or when the wait is up
    // (with the run as it is then). Kept under the request timeout.
    let limit = state.config.request_timeout.saturating_sub(Duration::from_secs(1)).min(MAX_WAIT);
    let wait = Duration::from_secs(query.wait.unwrap_or(0)).min(limit);
    let until = Instant::now() + wait;
    let mut pause = Duration::from_millis(100);
    let found = loop {
        let found = store.get_run_with_history(&id).await;
        let open =
            matches!(&found, Ok(Some(r)) if !r.status.is_terminal() && r.client.as_deref() == Some(caller.as_str()));
        let left = until.saturating_duration_since(Instant::now());
        if !open || left.is_zero() {
            break found;
        }
        // From 100 ms doubling to 1 s: a waiter costs Redis at most one
        // read a second once the first seconds have passed.
        tokio::time::sleep(pause.min(left)).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    };
    match found {
        // Another client's run is as absent as a run that never was.
        Ok(Some(record)) if record.client.as_deref() == Some(caller.as_str()) => {
            axum::Json(RunView::from(&record)).into_response()
        }
        Ok(Some(_)) => error(StatusCode::NOT_FOUND, "not_found", "no such run"),
        Ok(None) => error(StatusCode::NOT_FOUND, "not_found", "no such run"),
        Err(e) => internal(&ProducerError::Store(e)),
    }
}

/// Cancel a run of this client's that has not ended. Its next step ends
/// it `cancelled` and sends its webhook; gcrun stops polling it. A call
/// already made to Genesys is not undone.
#[utoipa::path(
    post,
    path = "/v1/runs/{id}/cancel",
    params(
        ("id" = String, Path, format = Uuid, description = "The run id"),
        ("Gcrun-Tenant" = Option<String>, Header, description = "The tenant to look in; absent, each of this client's"),
    ),
    request_body(content = Option<CancelRequest>, description = "Why (optional); recorded with the run"),
    responses(
        (status = 202, description = "The cancel was asked for", body = Cancelled),
        (status = 409, description = "The run had already ended", body = Cancelled),
        (status = 404, description = "No such run (or not this client's)", body = Problem),
        (status = 401, description = "Missing or invalid bearer token", body = Problem),
        (status = 403, description = "The Gcrun-Tenant header names a tenant this client may not use", body = Problem),
    )
)]
pub(crate) async fn cancel_run(
    State(state): State<AppState>,
    axum::Extension(who): axum::Extension<Caller>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(id) = id.parse::<RunId>() else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such run");
    };
    let store = match find_tenant(&state, &who, &headers, &id).await {
        Ok(Some(store)) => store,
        Ok(None) => return error(StatusCode::NOT_FOUND, "not_found", "no such run"),
        Err(r) => return r,
    };
    let caller = who.name;
    let why: CancelRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CancelRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(w) => w,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &format!("expected {{\"reason\": \"...\"}}: {e}"),
                );
            }
        }
    };
    match store.get_run(&id).await {
        Ok(Some(r)) if r.client.as_deref() == Some(caller.as_str()) => {}
        Ok(_) => return error(StatusCode::NOT_FOUND, "not_found", "no such run"),
        Err(e) => return internal(&ProducerError::Store(e)),
    }
    let operator = crate::operator::Operator::new(store.clone(), state.producer.queues().of_tenant(store.tenant()));
    let actor = crate::operator::Actor { by: format!("client {caller}"), reason: why.reason.unwrap_or_default() };
    match operator.cancel(&id, &actor).await {
        Ok(crate::operator::Cancel::Requested) => {
            (StatusCode::ACCEPTED, axum::Json(Cancelled { run_id: id, status: "cancelling".into() })).into_response()
        }
        Ok(crate::operator::Cancel::Ended(status)) => {
            (StatusCode::CONFLICT, axum::Json(Cancelled { run_id: id, status: status.to_string() })).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "ingest could not cancel");
            error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the cancel could not be recorded; try again")
        }
    }
}

/// The store of the tenant (of those the caller may use, or the one its
/// header names) that holds run `id` of this caller; `None`: no such run.
/// With one tenant to look in, that tenant's store, unread: the handler's
/// own read finds the run (and checks whose it is) without a second one.
async fn find_tenant(
    state: &AppState,
    who: &Caller,
    headers: &HeaderMap,
    id: &RunId,
) -> Result<Option<Store>, Response> {
    let tenants = who.lookup_tenants(headers)?;
    if let [only] = &tenants[..] {
        return Ok(Some(state.producer.store().of_tenant(only)));
    }
    for tenant in tenants {
        let store = state.producer.store().of_tenant(&tenant);
        match store.get_run(id).await {
            Ok(Some(r)) if r.client.as_deref() == Some(who.name.as_str()) => return Ok(Some(store)),
            Ok(_) => {}
            Err(e) => return Err(internal(&ProducerError::Store(e))),
        }
    }
    Ok(None)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

/// The OpenAPI 3.1 document of this service, generated from the handlers'
/// annotations and the request, response and run view types.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}
