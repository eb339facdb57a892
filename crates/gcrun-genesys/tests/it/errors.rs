use std::time::{Duration, SystemTime};

use gcrun_emulator::{EmulatorConfig, Faults, Limits};
use gcrun_genesys::error::{classify, parse_retry_after};
use gcrun_genesys::{ApiError, ApiErrorKind, ClientConfig, ErrorBody};
use gcrun_model::ErrorClass;
use reqwest::header::HeaderMap;
use serde_json::json;

use crate::{LOOKUP, lookup_inputs, quick, spawn, spawn_with};

fn faulty(faults: Faults) -> EmulatorConfig {
    EmulatorConfig { faults, ..quick() }
}

#[tokio::test]
async fn not_found_is_fatal_and_carries_the_correlation_id() {
    let (_emu, client) = spawn(quick()).await;
    let err = client.get_action("custom_-_missing").await.unwrap_err();
    assert_eq!((err.kind, err.status, err.code()), (ApiErrorKind::Http, Some(404), Some("not.found")));
    assert_eq!(err.class, ErrorClass::Fatal);
    let cid = err.correlation_id.clone().unwrap();
    assert_eq!(err.body.as_ref().unwrap().context_id.as_deref(), Some(cid.as_str()));
    let text = err.to_string();
    assert!(
        text.contains("GET /api/v2/integrations/actions/{actionId}") && text.contains(&cid) && text.contains("[fatal]"),
        "{text}"
    );
}

#[tokio::test]
async fn contract_violations_are_fatal_400s_with_details() {
    let (_emu, client) = spawn(quick()).await;
    let mut inputs = lookup_inputs("far-too-long-customer-id");
    inputs.insert("channel".into(), json!("fax"));
    let err = client.execute_action(LOOKUP, &inputs, false).await.unwrap_err();
    assert_eq!((err.status, err.class), (Some(400), ErrorClass::Fatal));
    assert_eq!(err.body.as_ref().unwrap().details.len(), 2);
}

#[tokio::test]
async fn injected_429_is_retryable_after_the_servers_delay() {
    let (_emu, client) =
        spawn(faulty(Faults { rate_429: 1.0, retry_after_secs: 7, budget: Some(1), ..Faults::default() })).await;
    let err = client.get_action(LOOKUP).await.unwrap_err();
    assert_eq!(err.status, Some(429));
    assert_eq!(err.code(), Some("too.many.requests.retry.after"));
    assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(err.class, ErrorClass::Retryable { after: Some(Duration::from_secs(7)) });
    assert!(client.get_action(LOOKUP).await.is_ok());
}

#[tokio::test]
async fn enforced_limits_report_the_rate_limit_headers() {
    let limits = Limits { executions_per_window: Some(1), ..Limits::default() };
    let (_emu, client) = spawn(EmulatorConfig { limits, ..quick() }).await;
    client.execute_action(LOOKUP, &lookup_inputs("a"), false).await.unwrap();
    let err = client.execute_action(LOOKUP, &lookup_inputs("b"), false).await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!((err.rate_limit.allowed, err.rate_limit.count), (Some(1), Some(1)));
    assert!(err.rate_limit.reset.is_some());
    assert!(err.retry_after.unwrap() >= Duration::from_secs(1));
}

#[tokio::test]
async fn gateway_errors_are_retryable_and_action_failures_are_not() {
    for status in [500, 502, 503, 504] {
        let (_emu, client) = spawn(faulty(Faults { rate_5xx: 1.0, status_5xx: status, ..Faults::default() })).await;
        let err = client.get_action(LOOKUP).await.unwrap_err();
        assert_eq!(err.status, Some(status));
        assert!(err.is_retryable(), "{status}: {err}");
    }
    let (_emu, client) = spawn(quick()).await;
    let mut inputs = lookup_inputs("c");
    inputs.insert("note".into(), json!("emulator:fail"));
    let err = client.execute_action(LOOKUP, &inputs, false).await.unwrap_err();
    assert_eq!(err.status, Some(500));
    assert_eq!(err.class, ErrorClass::Fatal, "ACTION.REMOTE_ENDPOINT is the action failing: {err}");
    assert!(err.to_string().contains("ACTION.REMOTE_ENDPOINT"));
}

#[tokio::test]
async fn a_dropped_connection_is_a_retryable_transport_error() {
    let (_emu, client) = spawn(faulty(Faults { rate_drop: 1.0, budget: Some(1), ..Faults::default() })).await;
    let err = client.get_action(LOOKUP).await.unwrap_err();
    assert_eq!(err.kind, ApiErrorKind::Transport, "{err}");
    assert!(err.is_retryable());
    assert!(err.ambiguous, "the request was handled before the answer was cut: {err:?}");
    assert!(client.get_action(LOOKUP).await.is_ok());
}

#[tokio::test]
async fn a_malformed_body_is_a_retryable_decode_error_keeping_the_raw_text() {
    let (_emu, client) = spawn(faulty(Faults { rate_malformed: 1.0, budget: Some(1), ..Faults::default() })).await;
    let err = client.get_action(LOOKUP).await.unwrap_err();
    assert_eq!((err.kind, err.status), (ApiErrorKind::Decode, Some(200)));
    assert!(err.is_retryable());
    assert!(err.ambiguous);
    assert_eq!(err.raw_body.as_deref(), Some("{\"id\": \"trunc"));
    assert!(err.correlation_id.is_some());
}

#[tokio::test]
async fn the_request_timeout_is_configuration() {
    let config = ClientConfig { request_timeout: Duration::from_millis(200), ..ClientConfig::default() };
    let (_emu, client) = spawn_with(
        faulty(Faults { latency: Duration::from_millis(1500), ..Faults::default() }),
        crate::CLIENT_SECRET,
        config,
    )
    .await;
    let err = client.get_action(LOOKUP).await.unwrap_err();
    assert_eq!(err.kind, ApiErrorKind::Transport);
    assert!(err.is_retryable());
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn nothing_listening_is_a_retryable_connect_error() {
    let port = gcrun_harness::free_port();
    let env = gcrun_genesys::Environment::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let config = ClientConfig { connect_timeout: Duration::from_millis(300), ..ClientConfig::default() };
    let client =
        gcrun_genesys::GenesysClient::new(env, gcrun_genesys::Credentials::new("id", "s3cr3t-value"), &config).unwrap();
    let err = client.get_action(LOOKUP).await.unwrap_err();
    assert_eq!(err.kind, ApiErrorKind::Auth, "the token request is the first to fail");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("could not connect"), "{err}");
    assert!(!err.ambiguous, "nothing was sent");
    assert!(!err.to_string().contains("s3cr3t-value"));
}

#[test]
fn classification_follows_the_reference() {
    let retry = |s| classify(s, None, None).is_retryable();
    for s in [408, 429, 500, 502, 503, 504] {
        assert!(retry(s), "{s}");
    }
    for s in [400, 401, 403, 404, 409, 413, 422, 501, 505] {
        assert!(!retry(s), "{s}");
    }
    let action = ErrorBody {
        details: vec![gcrun_genesys::error::ErrorDetail {
            error_code: Some("ACTION.PROCESSING".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(classify(500, Some(&action), None), ErrorClass::Fatal);
    assert_eq!(
        classify(503, None, Some(Duration::from_secs(3))),
        ErrorClass::Retryable { after: Some(Duration::from_secs(3)) }
    );
}

#[test]
fn retry_after_is_seconds_or_an_http_date() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
    assert_eq!(parse_retry_after(" 3 ", now), Some(Duration::from_secs(3)));
    assert_eq!(parse_retry_after("1.5", now), Some(Duration::from_millis(1500)));
    let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
    assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(30)));
    let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
    assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
    // Absurd values are capped, never a panic or an overflow later.
    let cap = gcrun_genesys::error::MAX_RETRY_AFTER;
    assert_eq!(parse_retry_after("1e300", now), Some(cap));
    assert_eq!(parse_retry_after("18446744073709551615", now), Some(cap));
    assert_eq!(parse_retry_after("NaN", now), None);
    assert_eq!(parse_retry_after(&httpdate::fmt_http_date(now + Duration::from_secs(86_400 * 365)), now), Some(cap));
    assert_eq!(parse_retry_after("soon", now), None);
    assert_eq!(parse_retry_after("-4", now), None);
}

#[test]
fn a_non_json_error_body_is_kept_raw() {
    let mut headers = HeaderMap::new();
    headers.insert("inin-correlation-id", "cid-1".parse().unwrap());
    headers.insert("retry-after", "9".parse().unwrap());
    let err = ApiError::from_response("GET /x".into(), 502, &headers, b"<html>Bad Gateway</html>");
    assert!(err.body.is_none());
    assert_eq!(err.raw_body.as_deref(), Some("<html>Bad Gateway</html>"));
    assert_eq!(err.correlation_id.as_deref(), Some("cid-1"));
    assert_eq!(err.class, ErrorClass::Retryable { after: Some(Duration::from_secs(9)) });
    assert!(err.to_string().contains("Bad Gateway"));
    let huge = vec![b'x'; 10_000];
    let err = ApiError::from_response("GET /x".into(), 400, &HeaderMap::new(), &huge);
    assert!(err.raw_body.as_ref().unwrap().len() < 2100, "raw bodies are truncated");
}

#[test]
fn every_answer_gets_a_verdict_and_a_label() {
    use gcrun_genesys::Verdict;
    let answer = |status: u16, retry_after: Option<&str>, body: &[u8]| {
        let mut headers = HeaderMap::new();
        if let Some(r) = retry_after {
            headers.insert("retry-after", r.parse().unwrap());
        }
        ApiError::from_response("POST /x".into(), status, &headers, body)
    };
    let secs = |s| Some(Duration::from_secs(s));
    assert_eq!(answer(429, Some("4"), b"").verdict(), Verdict::RateLimited(secs(4)));
    assert_eq!(answer(429, None, b"").verdict(), Verdict::RateLimited(None));
    assert_eq!(answer(503, Some("2"), b"").verdict(), Verdict::RetryAfter(secs(2)));
    assert_eq!(answer(502, None, b"").verdict(), Verdict::RetryAfter(None));
    assert_eq!(answer(500, None, b"").verdict(), Verdict::RetryAfter(None));
    assert_eq!(answer(408, None, b"").verdict(), Verdict::RetryAfter(None));
    let action = br#"{"status":500,"code":"internal.server.error","details":[{"errorCode":"ACTION.REMOTE_ENDPOINT"}]}"#;
    assert_eq!(answer(500, None, action).verdict(), Verdict::ActionFailed);
    assert_eq!(answer(401, None, b"").verdict(), Verdict::Refused);
    assert_eq!(answer(403, None, b"").verdict(), Verdict::Refused);
    assert_eq!(answer(404, None, b"").verdict(), Verdict::NotFound);
    for s in [400, 409, 413, 422, 501] {
        assert_eq!(answer(s, None, b"").verdict(), Verdict::Invalid, "{s}");
    }
    assert_eq!(answer(429, None, b"").label(), "429");
    let decode_err = serde_json::from_slice::<serde_json::Value>(b"{").unwrap_err();
    let cut = ApiError::decode("POST /x".into(), 200, &HeaderMap::new(), b"{", &decode_err);
    assert_eq!((cut.verdict(), cut.label().as_str()), (Verdict::AmbiguousOutcome, "decode"));
    assert!(Verdict::AmbiguousOutcome.is_retryable() && !Verdict::Refused.is_retryable());
}

#[tokio::test]
async fn transport_failures_are_ambiguous_only_once_something_was_sent() {
    use gcrun_genesys::Verdict;
    let (_emu, client) = spawn(faulty(Faults { rate_drop: 1.0, budget: Some(1), ..Faults::default() })).await;
    let err = client.execute_action(LOOKUP, &lookup_inputs("a"), false).await.unwrap_err();
    assert_eq!((err.verdict(), err.label().as_str()), (Verdict::AmbiguousOutcome, "transport"), "{err}");
    let port = gcrun_harness::free_port();
    let env = gcrun_genesys::Environment::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let config = ClientConfig { connect_timeout: Duration::from_millis(300), ..ClientConfig::default() };
    let closed = gcrun_genesys::GenesysClient::new(env, gcrun_genesys::Credentials::new("id", "s"), &config).unwrap();
    let err = closed.get_action(LOOKUP).await.unwrap_err();
    assert_eq!(err.verdict(), Verdict::RetryAfter(None), "nothing was sent: {err}");
}
