//! The pages and the two actions (requeue, purge).

// Handlers bail out with a finished `Response`, built once per request,
// so its size on the early-return path does not matter.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use gcrun_model::Tenant;
use gcrun_model::timestamp::{parse_moment, rfc3339_ms};
use gcrun_model::{Flavor, RunId, RunStatus};
use gcrun_producer::operator::{Actor, Operator, Selection};
use gcrun_store::{PageRequest, RunFilter, RunRecord, RunView};

use crate::App;
use crate::auth::{Session, Verdict, now_ms};

/// Runs a page shows.
const PAGE: usize = 50;
/// Index entries one page request may examine (filters that match little).
const BUDGET: usize = 5_000;
/// The overview's sample of recent runs.
const SAMPLE: usize = 2_000;

pub fn routes(app: App) -> Router {
    Router::new()
        .route("/ops", get(overview))
        .route("/ops/login", get(login_page).post(login))
        .route("/ops/logout", post(logout))
        .route("/ops/dlq", get(dlq))
        .route("/ops/runs", get(runs))
        .route("/ops/runs/{id}", get(run))
        .route("/ops/dlq/requeue", post(requeue))
        .route("/ops/runs/{id}/cancel", post(cancel))
        .route("/ops/pause", post(pause))
        .route("/ops/resume", post(resume))
        .route("/ops/dlq/purge", post(purge))
        .route("/ops/static/app.js", get(script))
        .layer(axum::middleware::map_response(harden))
        .with_state(app)
}

/// Headers every page carries: no caching of operator data, no framing
/// (clickjacking), no referrer leaking run ids, scripts only from here.
async fn harden(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    response
}

async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../static/app.js"))
}

fn render(t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "dashboard could not read the store");
    (StatusCode::SERVICE_UNAVAILABLE, "Redis is unavailable; try again").into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// The tenant a page or form is about, and the operator acting on it.
/// Pages name it in `?tenant=`, forms in a `tenant` field, so a form acts
/// on the tenant of the page it was filled in on, whatever another tab
/// shows meanwhile.
pub(crate) struct Scope {
    operator: Operator,
    tenant: String,
    /// Every tenant the dashboard serves (a selector when more than one).
    tenants: Vec<String>,
    /// `?tenant=<name>` for links, empty for the first tenant (so a
    /// one-tenant dashboard's addresses are as they were).
    tq: String,
}

fn scope(app: &App, named: Option<&str>) -> Result<Scope, Response> {
    let tenants = &app.config.tenants;
    let first = tenants.first().cloned().unwrap_or_default();
    let tenant = match named.map(str::trim).filter(|n| !n.is_empty()) {
        None => first.clone(),
        Some(n) => match Tenant::parse(n) {
            Ok(t) if tenants.contains(&t) => t,
            _ => return Err((StatusCode::NOT_FOUND, "this dashboard serves no such tenant").into_response()),
        },
    };
    let tq = if tenant == first { String::new() } else { format!("?tenant={tenant}") };
    Ok(Scope {
        operator: app.operator.for_tenant(&tenant),
        tenant: tenant.to_string(),
        tenants: tenants.iter().map(Tenant::to_string).collect(),
        tq,
    })
}

/// The session, or the answer for a request without one: a browser goes
/// to sign in, a tool with a bad bearer token gets 401.
fn require(app: &App, headers: &HeaderMap) -> Result<Session, Response> {
    if let Some(s) = app.session(headers) {
        return Ok(s);
    }
    if headers.contains_key(header::AUTHORIZATION) {
        return Err((StatusCode::UNAUTHORIZED, "an operator token is required").into_response());
    }
    Err(redirect("/ops/login"))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    error: Option<String>,
}

async fn login_page() -> Response {
    render(&LoginPage { error: None })
}

fn form(body: &Bytes) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

async fn login(State(app): State<App>, body: Bytes) -> Response {
    let fields = form(&body);
    let token = field(&fields, "token").unwrap_or_default().trim().to_string();
    let refused = |why: &str| {
        let mut r = render(&LoginPage { error: Some(why.into()) });
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r
    };
    match app.verdict(&token) {
        Verdict::Operator(op) => {
            tracing::info!(operator = %op.name, "operator signed in to the dashboard");
            let mut r = redirect("/ops");
            if let Ok(v) = HeaderValue::from_str(&app.session_cookie(&op)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Verdict::Client => refused("That is an upstream client's token. The dashboard takes operator tokens only."),
        Verdict::Unknown => refused("That is not an operator token this dashboard knows."),
    }
}

async fn logout(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(session) = require(&app, &headers) else { return redirect("/ops/login") };
    if !session.csrf_ok(field(&form(&body), "csrf")) {
        return (StatusCode::FORBIDDEN, "stale form; reload the page").into_response();
    }
    let mut r = redirect("/ops/login");
    if let Ok(v) = HeaderValue::from_str(&app.clear_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

// ---- overview ----

struct Card {
    id: &'static str,
    label: &'static str,
    value: String,
    class: &'static str,
}

struct QueueRow {
    name: String,
    ready: u64,
    scheduled: u64,
    in_flight: u64,
    dead: u64,
    oldest: String,
}

struct LimiterRow {
    name: String,
    held: u64,
    max: String,
    waiting: u64,
    reserved: u64,
    rate: String,
    pause: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    scope: Scope,
    section: &'static str,
    operator: String,
    csrf: String,
    notice: Option<String>,
    at: String,
    cards: Vec<Card>,
    queues: Vec<QueueRow>,
    counts: Vec<(String, i64)>,
    window: String,
    window_rows: Vec<(String, String)>,
    limiters: Vec<LimiterRow>,
    retention_rows: Vec<(String, String)>,
    pauses: Vec<gcrun_producer::operator::PauseView>,
    parked: u64,
}

fn pct(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{:.1} %", r * 100.0))
}

fn secs(s: Option<f64>) -> String {
    s.map_or("-".into(), |s| format!("{s:.2} s"))
}

fn days(secs: u64) -> String {
    if secs % 86_400 == 0 { format!("{} days", secs / 86_400) } else { format!("{:.1} hours", secs as f64 / 3600.0) }
}

async fn overview(State(app): State<App>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let session = match require(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let sc = match scope(&app, q.get("tenant").map(String::as_str)) {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let now = now_ms();
    let s = match sc.operator.stats(now, Duration::from_secs(3600), SAMPLE).await {
        Ok(s) => s,
        Err(e) => return unavailable(e),
    };
    let ready: u64 = s.queues.iter().map(|q| q.ready + q.scheduled).sum();
    let oldest = s.queues.iter().filter_map(|q| q.oldest_ready_ms).max();
    let cards = vec![
        Card {
            id: "dead-letters",
            label: "dead letters",
            value: s.dead_letters.to_string(),
            class: if s.dead_letters > 0 { "bad" } else { "ok" },
        },
        Card {
            id: "dead-webhooks",
            label: "dead webhooks",
            value: s.dead_webhooks.to_string(),
            class: if s.dead_webhooks > 0 { "bad" } else { "ok" },
        },
        Card { id: "queued", label: "jobs waiting", value: ready.to_string(), class: "" },
        Card {
            id: "oldest",
            label: "oldest ready job",
            value: oldest.map_or("-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0)),
            class: "",
        },
        Card { id: "success", label: "success, last hour", value: pct(s.window.success_rate), class: "" },
    ];
    let w = &s.window;
    let window_rows = vec![
        ("runs accepted".into(), format!("{}{}", w.runs, if w.sampled { " (newest sampled)" } else { "" })),
        ("by status".into(), w.by_status.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")),
        ("success rate".into(), pct(w.success_rate)),
        (
            "duration p50 / p95 / p99".into(),
            format!("{} / {} / {}", secs(w.duration_p50), secs(w.duration_p95), secs(w.duration_p99)),
        ),
        (
            "webhooks".into(),
            format!(
                "{} delivered, {} dead, {} pending ({} delivered)",
                w.webhooks_delivered,
                w.webhooks_dead,
                w.webhooks_pending,
                pct(w.webhook_delivery_rate)
            ),
        ),
    ];
    let r = &s.retention;
    let retention_rows = vec![
        ("ended runs kept".into(), days(r.ended_run_secs)),
        ("dead-lettered runs kept".into(), days(r.dead_run_secs)),
        ("idempotency keys kept".into(), days(r.idempotency_secs)),
        (
            "audit stream".into(),
            format!(
                "{} entries of about {} kept{}",
                r.audit_entries,
                r.audit_cap,
                r.audit_oldest_at.as_ref().map(|a| format!(", oldest {a}")).unwrap_or_default()
            ),
        ),
        (
            "dropped by retention".into(),
            if r.trimmed.is_empty() {
                "nothing yet".into()
            } else {
                r.trimmed.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
            },
        ),
    ];
    let page = Overview {
        scope: sc,
        section: "overview",
        operator: session.operator,
        csrf: session.csrf,
        notice: q.get("notice").cloned(),
        at: s.at.clone(),
        cards,
        queues: s
            .queues
            .iter()
            .map(|q| QueueRow {
                name: q.name.clone(),
                ready: q.ready,
                scheduled: q.scheduled,
                in_flight: q.in_flight,
                dead: q.dead,
                oldest: q.oldest_ready_ms.map_or("-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0)),
            })
            .collect(),
        counts: s.counts.iter().filter(|(k, _)| *k != "total").map(|(k, v)| (k.clone(), *v)).collect(),
        window: "hour".into(),
        window_rows,
        limiters: s
            .limiters
            .iter()
            .map(|l| LimiterRow {
                name: l.status.name.clone(),
                held: l.status.held,
                max: l.limits.get("maxConcurrent").map_or("?".into(), |v| v.to_string()),
                waiting: l.status.waiting,
                reserved: l.status.reserved,
                rate: l.limits.get("ratePerMinute").map_or("?".into(), |v| v.to_string()),
                pause: l
                    .status
                    .paused_for_ms
                    .map_or("-".into(), |ms| format!("paused {:.1} s more", ms as f64 / 1000.0)),
            })
            .collect(),
        retention_rows,
        pauses: s.pauses.clone(),
        parked: s.parked_runs,
    };
    render(&page)
}

// ---- lists ----

/// A list's filter as the form shows it (empty strings: not set).
#[derive(Debug, Default, Clone)]
struct FilterForm {
    status: String,
    flavor: String,
    target: String,
    reason: String,
    client: String,
    meta: String,
    since: String,
    until: String,
    newest: bool,
}

impl FilterForm {
    fn from_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Self {
        let mut f = Self::default();
        for (k, v) in pairs {
            let v = v.trim().to_string();
            match k {
                "status" => f.status = v,
                "flavor" => f.flavor = v,
                "target" => f.target = v,
                "reason" => f.reason = v,
                "client" => f.client = v,
                "meta" => f.meta = v,
                "since" => f.since = v,
                "until" => f.until = v,
                "order" => f.newest = v == "newest",
                _ => {}
            }
        }
        f
    }

    /// The store's filter, or what is wrong with the form.
    fn filter(&self) -> Result<RunFilter, String> {
        let now = now_ms();
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
        let moment = |s: &str, name: &str| -> Result<Option<u64>, String> {
            if s.is_empty() { Ok(None) } else { parse_moment(s, now).map(Some).map_err(|e| format!("{name}: {e}")) }
        };
        let metadata = match self.meta.split_once('=') {
            Some((k, v)) => vec![(k.trim().to_string(), v.trim().to_string())],
            None if self.meta.is_empty() => Vec::new(),
            None => return Err("metadata: write key=value".into()),
        };
        Ok(RunFilter {
            status: opt(&self.status)
                .map(|s| s.parse::<RunStatus>())
                .transpose()
                .map_err(|e| format!("status: {e}"))?,
            flavor: opt(&self.flavor).map(|s| s.parse::<Flavor>()).transpose().map_err(|e| format!("flavor: {e}"))?,
            target: opt(&self.target),
            reason_contains: opt(&self.reason),
            client: opt(&self.client),
            metadata,
            since_ms: moment(&self.since, "since")?,
            until_ms: moment(&self.until, "until")?,
            limit: None,
        })
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![];
        for (k, v) in [
            ("status", &self.status),
            ("flavor", &self.flavor),
            ("target", &self.target),
            ("reason", &self.reason),
            ("client", &self.client),
            ("meta", &self.meta),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if !v.is_empty() {
                out.push((k, v.clone()));
            }
        }
        if self.newest {
            out.push(("order", "newest".into()));
        }
        out
    }

    fn query(&self, extra: &[(&str, &str)]) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs() {
            q.append_pair(k, &v);
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
        q.finish()
    }
}

struct Row {
    id: String,
    status: String,
    flavor: String,
    target: String,
    at: String,
    retries: u32,
    reason: String,
}

impl Row {
    fn of(r: &RunRecord, dlq: bool) -> Self {
        Self {
            id: r.id.to_string(),
            status: r.status.to_string(),
            flavor: r.flavor.to_string(),
            target: r.target.clone(),
            at: rfc3339_ms(if dlq { r.completed_ms.unwrap_or(r.updated_ms) } else { r.created_ms }),
            retries: r.retries,
            reason: r.last_error.clone().unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "list.html")]
struct ListPage {
    scope: Scope,
    section: &'static str,
    operator: String,
    csrf: String,
    notice: Option<String>,
    title: &'static str,
    path: &'static str,
    dlq: bool,
    statuses: Vec<&'static str>,
    flavors: Vec<&'static str>,
    filter: FilterForm,
    filter_fields: Vec<(&'static str, String)>,
    error: Option<String>,
    rows: Vec<Row>,
    total: u64,
    examined: usize,
    next: Option<String>,
}

async fn dlq(State(app): State<App>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    list(app, headers, q, true).await
}

async fn runs(State(app): State<App>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    list(app, headers, q, false).await
}

async fn list(app: App, headers: HeaderMap, q: HashMap<String, String>, dlq: bool) -> Response {
    let session = match require(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let sc = match scope(&app, q.get("tenant").map(String::as_str)) {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let form = FilterForm::from_pairs(q.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let store = sc.operator.store().clone();
    let (path, title) = if dlq { ("/ops/dlq", "Dead letters") } else { ("/ops/runs", "Runs") };
    let mut error = None;
    let (mut rows, mut examined, mut next) = (Vec::new(), 0, None);
    match form.filter() {
        Err(e) => error = Some(e),
        Ok(filter) => {
            let req = PageRequest {
                after: q.get("after").map(String::as_str),
                limit: PAGE,
                newest_first: form.newest || (!dlq && !q.contains_key("order")),
                budget: BUDGET,
            };
            let page = if dlq { store.dlq_page(&filter, &req).await } else { store.runs_page(&filter, &req).await };
            match page {
                Err(e) => return unavailable(e),
                Ok(p) => {
                    rows = p.runs.iter().map(|r| Row::of(r, dlq)).collect();
                    // Records that no longer parse: shown for what they are
                    // (purge them, or look by hand), not hidden.
                    rows.extend(p.unreadable.iter().map(|(id, reason)| Row {
                        id: id.clone(),
                        status: "unreadable record".into(),
                        flavor: "-".into(),
                        target: "-".into(),
                        at: "-".into(),
                        retries: 0,
                        reason: reason.clone(),
                    }));
                    examined = p.examined;
                    let mut form = form.clone();
                    form.newest = req.newest_first;
                    next = p.next.map(|c| {
                        let mut extra = vec![("after", c.as_str())];
                        if !sc.tq.is_empty() {
                            extra.push(("tenant", sc.tenant.as_str()));
                        }
                        format!("{path}?{}", form.query(&extra))
                    });
                }
            }
        }
    }
    let total = if dlq { store.dlq_len().await } else { store.runs_len().await };
    let total = match total {
        Ok(t) => t,
        Err(e) => return unavailable(e),
    };
    let mut form = form;
    if !dlq && !q.contains_key("order") {
        form.newest = true;
    }
    let filter_fields = form.pairs();
    render(&ListPage {
        scope: sc,
        section: if dlq { "dlq" } else { "runs" },
        operator: session.operator,
        csrf: session.csrf,
        notice: q.get("notice").cloned(),
        title,
        path,
        dlq,
        statuses: if dlq { vec!["rejected", "dead"] } else { RunStatus::ALL.iter().map(|s| s.as_str()).collect() },
        flavors: vec!["runs", "execute", "workflow"],
        filter: form,
        filter_fields,
        error,
        rows,
        total,
        examined,
        next,
    })
}

// ---- one run ----

struct TransitionRow {
    at: String,
    from: String,
    to: String,
    cause: String,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    scope: Scope,
    section: &'static str,
    operator: String,
    csrf: String,
    notice: Option<String>,
    id: String,
    status: String,
    status_class: &'static str,
    facts: Vec<(String, String)>,
    can_requeue: bool,
    can_cancel: bool,
    transitions: Vec<TransitionRow>,
    attempts: Vec<gcrun_store::AttemptView>,
    error_json: Option<String>,
    request: String,
    outputs: Option<String>,
}

async fn run(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let session = match require(&app, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let sc = match scope(&app, q.get("tenant").map(String::as_str)) {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let Ok(id) = id.parse::<RunId>() else { return (StatusCode::NOT_FOUND, "no such run").into_response() };
    let record = match sc.operator.store().get_run_with_history(&id).await {
        Ok(Some(r)) => r,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such run (it may have expired)").into_response(),
        Err(e) => return unavailable(e),
    };
    let v = RunView::from(&record);
    let mut facts: Vec<(String, String)> = vec![
        ("flavor".into(), v.flavor.to_string()),
        ("action or flow".into(), v.definition_id.clone()),
        ("accepted".into(), v.created_at.clone()),
    ];
    let mut push = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            facts.push((k.into(), v));
        }
    };
    push("client", record.client.clone());
    push("submitted", v.submitted_at.clone());
    push("ended", v.completed_at.clone());
    push("deadline", Some(v.deadline.clone()));
    push("duration", v.duration_seconds.map(|s| format!("{s:.2} s")));
    push("remote run id", v.remote_run_id.clone());
    push("remote status", v.remote_status.clone());
    push("polls / retries", Some(format!("{} / {}", v.polls, v.retries)));
    push("last error", v.last_error.clone());
    push("Genesys correlation id", v.correlation_id.clone());
    push(
        "webhook",
        v.webhook.as_ref().map(|w| {
            format!(
                "{} after {} attempt(s){}{}",
                serde_json::to_value(w.status).ok().and_then(|s| s.as_str().map(str::to_owned)).unwrap_or_default(),
                w.attempts,
                w.delivered_at.as_ref().map(|d| format!(", delivered {d}")).unwrap_or_default(),
                w.last_error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
            )
        }),
    );
    push("cancel asked", record.cancel_requested.clone().filter(|_| !record.status.is_terminal()));
    push("secure action", record.secure.then(|| "yes: its data is erased when it ends".to_string()));
    let pretty = |j: &serde_json::Value| serde_json::to_string_pretty(j).unwrap_or_default();
    render(&RunPage {
        scope: sc,
        section: "runs",
        operator: session.operator,
        csrf: session.csrf,
        notice: q.get("notice").cloned(),
        id: id.to_string(),
        status: record.status.to_string(),
        status_class: match record.status {
            s if s.is_success() => "ok",
            s if s.is_terminal() => "bad",
            _ => "",
        },
        facts,
        can_requeue: record.status.is_dead_lettered(),
        can_cancel: !record.status.is_terminal() && record.cancel_requested.is_none(),
        transitions: v
            .transitions
            .iter()
            .map(|t| TransitionRow {
                at: t.at.clone(),
                from: t.from.map_or("-".into(), |f| f.to_string()),
                to: t.to.to_string(),
                cause: t.cause.clone(),
            })
            .collect(),
        attempts: v.attempts.clone(),
        error_json: v.error.as_ref().and_then(|e| serde_json::to_value(e).ok()).map(|e| pretty(&e)),
        request: serde_json::to_value(&v.request).map(|r| pretty(&r)).unwrap_or_default(),
        outputs: v.outputs.as_ref().map(pretty),
    })
}

// ---- actions ----

/// What a bulk form names: the ticked runs, or (`all`) every run the
/// filter carried in its `f_` fields matches.
fn selection(fields: &[(String, String)]) -> Result<Selection, String> {
    if field(fields, "all") == Some("1") {
        let form =
            FilterForm::from_pairs(fields.iter().filter_map(|(k, v)| k.strip_prefix("f_").map(|k| (k, v.as_str()))));
        return form.filter().map(Selection::Matching);
    }
    let ids: Result<Vec<RunId>, _> =
        fields.iter().filter(|(k, _)| k == "id").map(|(_, v)| v.parse::<RunId>()).collect();
    match ids {
        Ok(ids) if ids.is_empty() => Err("tick at least one run, or use the \"all matching\" button".into()),
        Ok(ids) => Ok(Selection::Runs(ids)),
        Err(_) => Err("a ticked run id is not a run id".into()),
    }
}

fn back_with(fields: &[(String, String)], notice: &str) -> Response {
    let back = field(fields, "back")
        // Only back to the dashboard's own pages: no open redirect.
        .filter(|b| (*b == "/ops" || b.starts_with("/ops/")) && !b.contains("//"))
        .unwrap_or("/ops/dlq");
    let form = FilterForm::from_pairs(fields.iter().filter_map(|(k, v)| k.strip_prefix("f_").map(|k| (k, v.as_str()))));
    let sep = if back.contains('?') { '&' } else { '?' };
    let mut extra = vec![("notice", notice)];
    if let Some(t) = field(fields, "tenant").filter(|t| !t.is_empty()) {
        extra.push(("tenant", t));
    }
    let query = if back == "/ops/dlq" {
        form.query(&extra)
    } else {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &extra {
            q.append_pair(k, v);
        }
        q.finish()
    };
    redirect(&format!("{back}{sep}{query}"))
}

fn checked(app: &App, headers: &HeaderMap, fields: &[(String, String)]) -> Result<Session, Response> {
    let session = require(app, headers)?;
    if !session.csrf_ok(field(fields, "csrf")) {
        return Err((StatusCode::FORBIDDEN, "stale or foreign form; reload the page and try again").into_response());
    }
    Ok(session)
}

async fn requeue(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let fields = form(&body);
    let session = match checked(&app, &headers, &fields) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let sc = match scope(&app, field(&fields, "tenant")) {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let selection = match selection(&fields) {
        Ok(s) => s,
        Err(e) => return back_with(&fields, &e),
    };
    let by = Actor { by: session.operator.clone(), reason: field(&fields, "reason_text").unwrap_or_default().into() };
    match sc.operator.requeue_runs_by(&selection, now_ms(), &by).await {
        Ok(done) => {
            tracing::info!(operator = %session.operator, requeued = done.len(), "requeued from the dashboard");
            back_with(&fields, &format!("{} run(s) requeued", done.len()))
        }
        Err(e) => back_with(&fields, &format!("requeue failed: {e}")),
    }
}

async fn cancel(State(app): State<App>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let fields = form(&body);
    let session = match checked(&app, &headers, &fields) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let sc = match scope(&app, field(&fields, "tenant")) {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let Ok(run) = id.parse::<RunId>() else { return (StatusCode::NOT_FOUND, "no such run").into_response() };
    let by = Actor { by: session.operator.clone(), reason: field(&fields, "reason_text").unwrap_or_default().into() };
    let back = vec![("back".to_string(), format!("/ops/runs/{run}")), ("tenant".to_string(), sc.tenant.clone())];
    match sc.operator.cancel(&run, &by).await {
        Ok(gcrun_producer::operator::Cancel::Requested) => {
            tracing::info!(operator = %session.operator, run = %run, "cancel asked from the dashboard");
            back_with(&back, "cancel asked: the run's next step ends it")
        }
        Ok(gcrun_producer::operator::Cancel::Ended(status)) => {
            back_with(&back, &format!("the run had already ended: {status}"))
        }
        Err(e) => back_with(&back, &format!("cancel failed: {e}")),
    }
}

/// Pause (`kind`, `value`, `reason_text`) or resume (`what`: the pause's
/// own name, `queue:submit`, `flavor:runs`, `target:<id>`).
async fn pause(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let fields = form(&body);
    let session = match checked(&app, &headers, &fields) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let sc = match scope(&app, field(&fields, "tenant")) {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let back = vec![("back".to_string(), "/ops".to_string()), ("tenant".to_string(), sc.tenant.clone())];
    let what = match gcrun_producer::operator::Pause::parse(
        field(&fields, "kind").unwrap_or_default(),
        field(&fields, "value").unwrap_or_default().trim(),
    ) {
        Ok(w) => w,
        Err(e) => return back_with(&back, &e),
    };
    let by = Actor { by: session.operator.clone(), reason: field(&fields, "reason_text").unwrap_or_default().into() };
    match sc.operator.pause(&what, &by, now_ms()).await {
        Ok(()) => back_with(&back, &format!("paused {what}")),
        Err(e) => back_with(&back, &format!("pause failed: {e}")),
    }
}

async fn resume(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let fields = form(&body);
    if let Err(r) = checked(&app, &headers, &fields) {
        return r;
    }
    let sc = match scope(&app, field(&fields, "tenant")) {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let back = vec![("back".to_string(), "/ops".to_string()), ("tenant".to_string(), sc.tenant.clone())];
    let name = field(&fields, "what").unwrap_or_default();
    let what = match name.split_once(':') {
        Some(("target", id)) => gcrun_producer::operator::Pause::parse("action", id),
        Some((kind, value)) => gcrun_producer::operator::Pause::parse(kind, value),
        None => Err(format!("nothing named `{name}` to resume")),
    };
    let what = match what {
        Ok(w) => w,
        Err(e) => return back_with(&back, &e),
    };
    match sc.operator.resume(&what).await {
        Ok(r) => back_with(&back, &format!("resumed {what}; {} parked run(s) sent on", r.unparked)),
        Err(e) => back_with(&back, &format!("resume failed: {e}")),
    }
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    scope: Scope,
    section: &'static str,
    operator: String,
    csrf: String,
    notice: Option<String>,
    count: usize,
    ids: Vec<String>,
    shown: Vec<String>,
}

async fn purge(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let fields = form(&body);
    let session = match checked(&app, &headers, &fields) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let sc = match scope(&app, field(&fields, "tenant")) {
        Ok(sc) => sc,
        Err(r) => return r,
    };
    let selection = match selection(&fields) {
        Ok(s) => s,
        Err(e) => return back_with(&fields, &e),
    };
    if field(&fields, "confirm") == Some("yes") {
        let Selection::Runs(ids) = selection else { return back_with(&fields, "confirm a purge by its runs") };
        return match sc.operator.purge_ids(&ids).await {
            Ok(n) => {
                tracing::info!(operator = %session.operator, purged = n, "purged from the dashboard");
                back_with(&fields, &format!("{n} run(s) purged"))
            }
            Err(e) => back_with(&fields, &format!("purge failed: {e}")),
        };
    }
    // First, say exactly what would go: the confirmation names each run.
    let listed = match sc.operator.preview(&selection).await {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    let ids: Vec<String> = listed.iter().filter(|r| r.status.is_dead_lettered()).map(|r| r.id.to_string()).collect();
    render(&ConfirmPage {
        scope: sc,
        section: "dlq",
        operator: session.operator,
        csrf: session.csrf,
        notice: None,
        count: ids.len(),
        shown: ids.iter().take(200).cloned().collect(),
        ids,
    })
}
