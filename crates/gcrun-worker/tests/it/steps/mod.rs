//! The decision tables of the three steps, row by row, with no Redis, no
//! emulator and no clock: each test builds a record and an observation,
//! calls `decide`, and checks the decision's data.

mod poll;
mod submit;
mod webhook;

use std::time::Duration;

use gcrun_genesys::{ApiError, ApiErrorKind};
use gcrun_model::{Flavor, Jitter, RunId, RunRequest, RunStatus, WebhookStatus};
use gcrun_store::RunRecord;
use gcrun_worker::WorkerConfig;
use gcrun_worker::step::{Act, Decision, Write};
use reqwest::header::HeaderMap;

pub const NOW: u64 = 1_000_000;
pub const ACTION: &str = "custom_-_a";
pub const HOOK: &str = "http://127.0.0.1:9/hooks";

pub fn policy() -> WorkerConfig {
    WorkerConfig { default_webhook_url: Some(HOOK.parse().unwrap()), ..WorkerConfig::default() }
}

pub fn jitter() -> Jitter {
    Jitter::seeded(7)
}

/// A run of `flavor` in `status`, accepted a second ago, due in a minute.
pub fn record(flavor: Flavor, status: RunStatus) -> RunRecord {
    let request = match flavor {
        Flavor::Workflow => RunRequest::builder(flavor, "7f3a9c1e-5b2d-4f8a-9e6c-1d3b5a7c9e20").input("Flow.X", "1"),
        _ => RunRequest::builder(flavor, ACTION).input("customerId", "c-1"),
    }
    .build(&gcrun_model::RequestLimits::default())
    .unwrap();
    let mut rec = RunRecord::accepted(RunId::new(), &request, NOW - 1_000, NOW + 60_000);
    rec.status = status;
    if matches!(status, RunStatus::Submitted | RunStatus::Queued | RunStatus::Running) && flavor != Flavor::Execute {
        rec.remote_id = Some("remote-1".into());
    }
    rec
}

/// A Genesys answer with this status (and `Retry-After` seconds).
pub fn http(status: u16, retry_after: Option<u64>) -> ApiError {
    let mut headers = HeaderMap::new();
    if let Some(s) = retry_after {
        headers.insert("retry-after", s.to_string().parse().unwrap());
    }
    headers.insert("inin-correlation-id", "cid-1".parse().unwrap());
    ApiError::from_response("POST /x".into(), status, &headers, b"")
}

/// A 500 naming an `ACTION.*` detail: the action itself failed.
pub fn action_failed() -> ApiError {
    let body = br#"{"status":500,"code":"internal.server.error","details":[{"errorCode":"ACTION.REMOTE_ENDPOINT"}]}"#;
    let mut headers = HeaderMap::new();
    headers.insert("inin-correlation-id", "cid-1".parse().unwrap());
    ApiError::from_response("POST /x".into(), 500, &headers, body)
}

/// An answer cut short after the request was handled.
pub fn ambiguous() -> ApiError {
    let e = serde_json::from_slice::<serde_json::Value>(b"{").unwrap_err();
    ApiError::decode("POST /x".into(), 200, &HeaderMap::new(), b"{", &e)
}

/// The OAuth service refusing gcrun's credentials.
pub fn refused_credentials() -> ApiError {
    let mut e = http(401, None);
    e.kind = ApiErrorKind::Auth;
    e.class = gcrun_model::ErrorClass::Fatal;
    e
}

/// A request as a store would read it back: the shape only, no limits, so
/// a test can hold one the worker's own limits then refuse.
pub fn stored_request(doc: serde_json::Value) -> RunRequest {
    RunRequest::parse(&doc, &gcrun_model::RequestLimits::stored()).unwrap()
}

pub fn act<N: std::fmt::Debug>(d: Decision<N>) -> Act {
    match d {
        Decision::Act(a) => a,
        other => panic!("expected an act, got {other:?}"),
    }
}

pub fn need<N: std::fmt::Debug>(d: Decision<N>) -> N {
    match d {
        Decision::Need(n) => n,
        other => panic!("expected a need, got {other:?}"),
    }
}

/// The transition an act writes: (from, to, cause).
pub fn transition(a: &Act) -> (RunStatus, RunStatus, &str) {
    match &a.write {
        Write::Transition { from, to, cause, .. } => (*from, *to, cause.as_str()),
        other => panic!("expected a transition, got {other:?}"),
    }
}

pub fn update(a: &Act) -> &gcrun_store::RunUpdate {
    match &a.write {
        Write::Transition { update, .. } | Write::Advance { update, .. } => update,
        other => panic!("expected a write with fields, got {other:?}"),
    }
}

/// The run ended: its permit is released and its webhook is owed, first
/// delivery due now.
pub fn assert_ends_with_webhook(a: &Act, rec: &RunRecord, to: RunStatus) {
    use gcrun_queue::Job;
    use gcrun_worker::step::PermitOp;
    assert_eq!(transition(a).1, to, "{a:?}");
    assert_eq!(a.permit, PermitOp::Release);
    assert_eq!(update(a).webhook_status, Some(WebhookStatus::Pending));
    assert!(
        matches!(a.jobs[..], [Job::Webhook { run, attempt: 0, after: Duration::ZERO, .. }] if run == rec.id),
        "{a:?}"
    );
}
