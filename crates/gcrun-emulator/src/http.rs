//! The HTTP face of the emulator: routes, middleware and handlers.

// Handlers return `Result<_, Response>` to bail out with a finished
// ErrorBody answer; the response is built once per request, so its size
// does not matter here.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Map, Value, json};
use time::format_description::well_known::Rfc3339;

use crate::directives::Directives;
use crate::fixtures::render_output;
use crate::state::{Emulator, Fault, Limited, Phase, Run, RunKind, lock};

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
        .route_layer(middleware::from_fn_with_state(emulator.clone(), authenticate));
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
        .layer(middleware::from_fn_with_state(emulator.clone(), inject_faults))
        .layer(middleware::from_fn(ensure_error_body))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(emulator.clone(), observe))
        .with_state(emulator)
}

// ---------------------------------------------------------------- middleware

/// Outermost: assigns the correlation id, records the answer in the stats,
/// and cuts the connection of responses marked [`Dropped`].
async fn observe(State(em): State<Emulator>, mut req: Request, next: Next) -> Response {
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
async fn ensure_error_body(req: Request, next: Next) -> Response {
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
async fn inject_faults(State(em): State<Emulator>, req: Request, next: Next) -> Response {
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
async fn authenticate(State(em): State<Emulator>, req: Request, next: Next) -> Response {
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

// ---------------------------------------------------------------- responses

fn error_body(cid: Option<&CorrelationId>, status: StatusCode, code: &str, message: &str) -> Response {
    error_body_with(cid, status, json!({"code": code, "message": message}))
}

fn error_body_with(cid: Option<&CorrelationId>, status: StatusCode, mut body: Value) -> Response {
    if let Some(obj) = body.as_object_mut() {
        obj.insert("status".into(), json!(status.as_u16()));
        if let Some(cid) = cid {
            obj.insert("contextId".into(), json!(cid.0));
        }
    }
    (status, axum::Json(body)).into_response()
}

fn too_many_requests(cid: Option<&CorrelationId>, l: Limited) -> Response {
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

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn parse_object(cid: Option<&CorrelationId>, body: &Bytes) -> Result<Map<String, Value>, Response> {
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

fn invalid_inputs(cid: Option<&CorrelationId>, violations: &gcrun_model::Violations) -> Response {
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

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

// ---------------------------------------------------------------- handlers

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

/// `POST /oauth/token`: client credentials with HTTP Basic auth.
async fn token(State(em): State<Emulator>, headers: HeaderMap, body: Bytes) -> Response {
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

fn action_json(a: &crate::fixtures::ActionFixture, with_contract: bool) -> Value {
    let mut v = json!({
        "id": a.id,
        "name": a.name,
        "selfUri": format!("/api/v2/integrations/actions/{}", a.id),
    });
    let obj = v.as_object_mut().expect("json! object");
    for (key, value) in [
        ("integrationId", a.integration_id.clone().map(Value::String)),
        ("category", a.category.clone().map(Value::String)),
        ("version", a.version.map(Value::from)),
        ("secure", a.secure.map(Value::Bool)),
        ("config", a.config.clone()),
    ] {
        if let Some(value) = value {
            obj.insert(key.into(), value);
        }
    }
    if with_contract {
        obj.insert("contract".into(), a.contract.clone());
    }
    v
}

/// `GET /api/v2/integrations/actions?pageSize&pageNumber&category&name`.
async fn list_actions(
    State(em): State<Emulator>,
    cid: Option<axum::Extension<CorrelationId>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let cid = cid.map(|c| c.0);
    let number = |key: &str, default: u64, max: u64| -> Result<u64, Response> {
        match q.get(key) {
            None => Ok(default),
            Some(raw) => match raw.parse::<u64>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(error_body(
                    cid.as_ref(),
                    StatusCode::BAD_REQUEST,
                    "bad.request",
                    &format!("{key} must be a whole number from 1 to {max}"),
                )),
            },
        }
    };
    let (page_size, page_number) = match (number("pageSize", 25, 500), number("pageNumber", 1, 1_000_000)) {
        (Ok(s), Ok(n)) => (s, n),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let category = q.get("category").map(|c| c.to_lowercase());
    let name = q.get("name").map(|n| n.to_lowercase());
    let mut matching: Vec<_> =
        em.0.actions
            .values()
            .map(|(a, _)| a)
            .filter(|a| category.as_ref().is_none_or(|c| a.category.as_ref().is_some_and(|ac| ac.to_lowercase() == *c)))
            .filter(|a| name.as_ref().is_none_or(|n| a.name.to_lowercase().contains(n.as_str())))
            .collect();
    matching.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    let total = matching.len() as u64;
    let page_count = total.div_ceil(page_size).max(1);
    let entities: Vec<Value> = matching
        .iter()
        .skip(((page_number - 1) * page_size) as usize)
        .take(page_size as usize)
        .map(|a| action_json(a, false))
        .collect();
    let uri = |n: u64| format!("/api/v2/integrations/actions?pageSize={page_size}&pageNumber={n}");
    let mut body = json!({
        "entities": entities,
        "pageSize": page_size,
        "pageNumber": page_number,
        "total": total,
        "pageCount": page_count,
        "firstUri": uri(1),
        "selfUri": uri(page_number),
        "lastUri": uri(page_count),
    });
    if page_number < page_count {
        body["nextUri"] = json!(uri(page_number + 1));
    }
    if page_number > 1 {
        body["previousUri"] = json!(uri(page_number - 1));
    }
    json_response(StatusCode::OK, body)
}

/// Genesys's 404 for an entity: `not.found` with the id as `entityId`.
fn entity_not_found(cid: Option<&CorrelationId>, what: &str, id: &str) -> Response {
    error_body_with(
        cid,
        StatusCode::NOT_FOUND,
        json!({"code": "not.found", "message": format!("{what} {id} not found"), "entityId": id}),
    )
}

fn unknown_action(cid: Option<&CorrelationId>, id: &str) -> Response {
    entity_not_found(cid, "Action", id)
}

/// `GET /api/v2/integrations/actions/{actionId}?expand=contract`.
async fn get_action(
    State(em): State<Emulator>,
    cid: Option<axum::Extension<CorrelationId>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let cid = cid.map(|c| c.0);
    let Some((action, _)) = em.0.actions.get(&id) else { return unknown_action(cid.as_ref(), &id) };
    let with_contract = q.get("expand").is_some_and(|e| e.split(',').any(|x| x.trim() == "contract"));
    json_response(StatusCode::OK, action_json(action, with_contract))
}

/// Validates inputs against an action's input schema; `Err` is the 400.
fn validate_inputs(
    em: &Emulator,
    cid: Option<&CorrelationId>,
    id: &str,
    inputs: &Map<String, Value>,
) -> Result<(), Response> {
    if let Some((_, Some(schema))) = em.0.actions.get(id) {
        let violations = schema.validate(inputs);
        if !violations.is_empty() {
            return Err(invalid_inputs(cid, &violations));
        }
    }
    Ok(())
}

/// Ends an execute call's concurrency slot even if the handler is dropped
/// (client gone) mid-sleep.
struct Executing(Emulator);

impl Drop for Executing {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// `POST /api/v2/integrations/actions/{actionId}/execute`: synchronous.
async fn execute_action(
    State(em): State<Emulator>,
    cid: Option<axum::Extension<CorrelationId>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let cid = cid.map(|c| c.0);
    let cid = cid.as_ref();
    let Some((action, _)) = em.0.actions.get(&id) else { return unknown_action(cid, &id) };
    let inputs = match parse_object(cid, &body) {
        Ok(inputs) => inputs,
        Err(r) => return r,
    };
    if let Err(r) = validate_inputs(&em, cid, &id, &inputs) {
        return r;
    }
    let d = Directives::from_inputs(&inputs);
    if let Some((n, code)) = &d.transient {
        let key = format!("{id}\u{0}{}", String::from_utf8_lossy(&body));
        let mut left = lock(&em.0.execute_transients);
        let remaining = left.entry(key).or_insert(*n);
        if *remaining > 0 {
            *remaining -= 1;
            drop(left);
            let (status, gcode) = if code == "timeout" {
                (StatusCode::GATEWAY_TIMEOUT, "gateway.timeout")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "service.unavailable")
            };
            return error_body(cid, status, gcode, &format!("The action could not run now ({code}); try again."));
        }
    }
    if let Err(limited) = em.admit(None) {
        return too_many_requests(cid, limited);
    }
    let _slot = Executing(em.clone());
    tokio::time::sleep(d.slow.unwrap_or(em.0.timings.execute_for)).await;
    if let Some(code) = d.fail {
        // Real action failures always carry an `ACTION.*` detail code; any
        // other requested code goes into the message.
        let (detail, message) = if code.starts_with("ACTION.") {
            (code, "The action failed.".to_string())
        } else if code.is_empty() {
            (
                "ACTION.REMOTE_ENDPOINT".to_string(),
                "The action failed: the remote endpoint answered with an error.".to_string(),
            )
        } else {
            ("ACTION.REMOTE_ENDPOINT".to_string(), format!("The action failed: the remote endpoint answered {code}."))
        };
        return error_body_with(
            cid,
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({
                "code": "internal.server.error",
                "message": message,
                "details": [{"errorCode": detail, "entityId": id, "entityName": action.name}],
            }),
        );
    }
    let outputs = action.output.as_ref().map_or_else(|| json!({}), |t| render_output(t, &inputs));
    let outputs = if q.get("flatten").is_some_and(|f| f == "true") { flatten(&outputs) } else { outputs };
    json_response(StatusCode::OK, outputs)
}

/// `?flatten=true`: nested objects become dotted keys.
fn flatten(value: &Value) -> Value {
    fn walk(prefix: &str, v: &Value, out: &mut Map<String, Value>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.clone());
            }
        }
    }
    let mut out = Map::new();
    walk("", value, &mut out);
    Value::Object(out)
}

fn run_json(run: &Run, now: Instant, transient: Option<&str>) -> Value {
    let RunKind::Action { definition_id } = &run.kind else { return Value::Null };
    let phase = run.phase(now);
    let q = run.queued_for;
    let mut v = json!({
        "id": run.id,
        "definitionId": definition_id,
        "mode": "async",
        "createdAt": rfc3339(run.created),
    });
    let (status, updated) = match phase {
        Phase::Queued => ("queued", run.created),
        Phase::Running => ("running", run.at(q)),
        Phase::Done => (if run.outcome.is_ok() { "completed" } else { "failed" }, run.at(q + run.running_for)),
    };
    if let Some(code) = transient {
        // A transient run error: the run is not over, whatever its clock says.
        v["status"] = json!(if phase == Phase::Queued { "queued" } else { "running" });
        v["updatedAt"] = json!(rfc3339(time::OffsetDateTime::now_utc()));
        v["error"] = json!({"code": code, "message": "The action's compute was not available; the run will continue."});
        return v;
    }
    v["status"] = json!(status);
    v["updatedAt"] = json!(rfc3339(updated));
    if phase == Phase::Done {
        v["completedAt"] = json!(rfc3339(updated));
        match &run.outcome {
            Ok(outputs) => v["outputs"] = outputs.clone(),
            Err((code, message)) => v["error"] = json!({"code": code, "message": message}),
        }
    }
    v
}

/// `POST /api/v2/actions/runs`: the spec's asynchronous contract.
async fn submit_run(State(em): State<Emulator>, cid: Option<axum::Extension<CorrelationId>>, body: Bytes) -> Response {
    let cid = cid.map(|c| c.0);
    let cid = cid.as_ref();
    let doc = match parse_object(cid, &body) {
        Ok(doc) => doc,
        Err(r) => return r,
    };
    let bad = |message: &str| error_body(cid, StatusCode::BAD_REQUEST, "bad.request", message);
    let Some(definition_id) = doc.get("definitionId").and_then(Value::as_str) else {
        return bad("definitionId is required and must be a string");
    };
    match doc.get("mode") {
        None => {}
        Some(Value::String(m)) if m == "async" => {}
        Some(_) => return bad("mode must be \"async\""),
    }
    let run_name = match doc.get("runName") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => return bad("runName must be a string"),
    };
    let inputs = match doc.get("inputs") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return bad("inputs must be a JSON object"),
    };
    let Some((action, _)) = em.0.actions.get(definition_id) else { return unknown_action(cid, definition_id) };
    if let Err(r) = validate_inputs(&em, cid, definition_id, &inputs) {
        return r;
    }
    let output = action.output.as_ref().map_or_else(|| json!({}), |t| render_output(t, &inputs));
    let run =
        em.new_run(RunKind::Action { definition_id: definition_id.to_string() }, run_name.clone(), &inputs, output);
    if let Err(limited) = em.admit(Some(run.ends_at())) {
        return too_many_requests(cid, limited);
    }
    em.note_run_name(run_name.as_deref());
    let body = run_json(&run, Instant::now(), None);
    lock(&em.0.runs).insert(run.id.clone(), run);
    json_response(StatusCode::CREATED, body)
}

/// `GET /api/v2/actions/runs/{runId}`.
async fn get_run(
    State(em): State<Emulator>,
    cid: Option<axum::Extension<CorrelationId>>,
    Path(id): Path<String>,
) -> Response {
    let cid = cid.map(|c| c.0);
    let now = Instant::now();
    let mut runs = lock(&em.0.runs);
    let Some(run) = runs.get_mut(&id).filter(|r| matches!(r.kind, RunKind::Action { .. })) else {
        drop(runs);
        return entity_not_found(cid.as_ref(), "Run", &id);
    };
    let transient = if run.transient_left > 0 {
        run.transient_left -= 1;
        Some(run.transient_code.clone())
    } else {
        None
    };
    let snapshot = run.clone();
    drop(runs);
    let transient = transient.or_else(|| {
        em.roll(Fault::RunError).then(|| if fastrand::bool() { "compute_unavailable" } else { "timeout" }.to_string())
    });
    json_response(StatusCode::OK, run_json(&snapshot, now, transient.as_deref()))
}

/// `POST /api/v2/flows/executions`: launches a workflow.
async fn launch_flow(State(em): State<Emulator>, cid: Option<axum::Extension<CorrelationId>>, body: Bytes) -> Response {
    let cid = cid.map(|c| c.0);
    let cid = cid.as_ref();
    let doc = match parse_object(cid, &body) {
        Ok(doc) => doc,
        Err(r) => return r,
    };
    let bad = |message: &str| error_body(cid, StatusCode::BAD_REQUEST, "bad.request", message);
    let Some(flow_id) = doc.get("flowId").and_then(Value::as_str) else {
        return bad("flowId is required and must be a string");
    };
    let inputs = match doc.get("inputData") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return bad("inputData must be a JSON object"),
    };
    let name = match doc.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => Some(n.clone()),
        Some(_) => return bad("name must be a string"),
    };
    let Some(flow) = em.0.flows.get(flow_id) else {
        return entity_not_found(cid, "Flow", flow_id);
    };
    match doc.get("flowVersion") {
        None | Some(Value::Null) => {}
        Some(Value::String(v)) if *v == flow.version => {}
        Some(v) => {
            return bad(&format!("flow {flow_id} has no version {v}; the published version is {}", flow.version));
        }
    }
    let output = flow.output.as_ref().map_or_else(|| json!({}), |t| render_output(t, &inputs));
    let kind = RunKind::Flow { flow_id: flow_id.to_string(), flow_version: flow.version.clone() };
    let run = em.new_run(kind, name.clone(), &inputs, output);
    if let Err(limited) = em.admit(Some(run.ends_at())) {
        return too_many_requests(cid, limited);
    }
    em.note_run_name(name.as_deref());
    let body = json!({
        "id": run.id,
        "name": name.clone().unwrap_or_else(|| flow.name.clone()),
        "flowVersion": flow.version,
        "selfUri": format!("/api/v2/flows/executions/{}", run.id),
    });
    lock(&em.0.runs).insert(run.id.clone(), run);
    json_response(StatusCode::OK, body)
}

/// `GET /api/v2/flows/executions/{flowExecutionId}`.
async fn get_flow_execution(
    State(em): State<Emulator>,
    cid: Option<axum::Extension<CorrelationId>>,
    Path(id): Path<String>,
) -> Response {
    let cid = cid.map(|c| c.0);
    let run = lock(&em.0.runs).get(&id).cloned();
    let Some((run, RunKind::Flow { flow_version, flow_id })) = run.map(|r| (r.clone(), r.kind)) else {
        return entity_not_found(cid.as_ref(), "Flow execution", &id);
    };
    let flow_name = em.0.flows.get(&flow_id).map(|f| f.name.clone()).unwrap_or_default();
    let mut v = json!({
        "id": run.id,
        "name": run.name.clone().unwrap_or(flow_name),
        "flowVersion": flow_version,
        "dateLaunched": rfc3339(run.created),
        "status": "RUNNING",
        "selfUri": format!("/api/v2/flows/executions/{}", run.id),
    });
    if run.phase(Instant::now()) == Phase::Done {
        v["dateCompleted"] = json!(rfc3339(run.at(run.queued_for + run.running_for)));
        match &run.outcome {
            Ok(outputs) => {
                v["status"] = json!("COMPLETED");
                v["completionReason"] = json!("Completed");
                v["outputData"] = outputs.clone();
            }
            Err((code, message)) => {
                v["status"] = json!("FAILED");
                v["completionReason"] = json!(message);
                v["flowErrorInfo"] = json!({"message": message, "code": code});
            }
        }
    }
    json_response(StatusCode::OK, v)
}

// ---------------------------------------------------------------- admin

async fn stats(State(em): State<Emulator>) -> Response {
    json_response(StatusCode::OK, serde_json::to_value(em.stats()).unwrap_or(Value::Null))
}

async fn reset_stats(State(em): State<Emulator>) -> StatusCode {
    em.reset_stats();
    StatusCode::NO_CONTENT
}

async fn get_faults(State(em): State<Emulator>) -> Response {
    json_response(StatusCode::OK, serde_json::to_value(em.faults()).unwrap_or(Value::Null))
}

async fn put_faults(State(em): State<Emulator>, cid: Option<axum::Extension<CorrelationId>>, body: Bytes) -> Response {
    let cid = cid.map(|c| c.0);
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

async fn revoke_tokens(State(em): State<Emulator>) -> StatusCode {
    em.revoke_tokens();
    StatusCode::NO_CONTENT
}
