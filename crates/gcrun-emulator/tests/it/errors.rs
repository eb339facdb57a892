use serde_json::json;

use crate::{App, LOOKUP, Reply};

#[tokio::test]
async fn malformed_requests_get_error_bodies_never_a_panic() {
    let app = App::demo().await;
    let send =
        |req: reqwest::RequestBuilder| async { Reply::from(req.bearer_auth(&app.token).send().await.unwrap()).await };

    let r = send(
        app.http.post(app.url("/api/v2/actions/runs")).header("content-type", "application/json").body("{not json"),
    )
    .await;
    r.assert_error(400, "bad.request");
    let r = send(app.http.post(app.url("/api/v2/actions/runs")).body(vec![0xff, 0xfe, 0x00])).await;
    r.assert_error(400, "bad.request");
    let r = send(app.http.post(app.url("/api/v2/actions/runs")).json(&json!(null))).await;
    r.assert_error(400, "bad.request");
    let r = send(app.http.get(app.url("/api/v2/no/such/thing"))).await;
    r.assert_error(404, "not.found");
    let r = send(app.http.delete(app.url("/api/v2/actions/runs"))).await;
    r.assert_error(405, "method.not.allowed");
    let big = "x".repeat(2 * 1024 * 1024);
    let r = send(app.http.post(app.url(&format!("/api/v2/integrations/actions/{LOOKUP}/execute"))).body(big)).await;
    r.assert_error(413, "request.entity.too.large");
    let r = send(app.http.get(app.url("/api/v2/integrations/actions/%FF%FE"))).await;
    assert!(r.status == 404 || r.status == 400, "{r:?}");
    assert!(r.body["code"].is_string(), "{r:?}");

    // Still serving after all of that.
    assert_eq!(app.get(&format!("/api/v2/integrations/actions/{LOOKUP}")).await.status, 200);
    let stats = app.emu.emulator.stats();
    assert!(stats.requests.contains_key("GET (unmatched)"), "{:?}", stats.requests.keys());
}

#[tokio::test]
async fn every_answer_carries_a_fresh_correlation_id() {
    let app = App::demo().await;
    let a = app.get(&format!("/api/v2/integrations/actions/{LOOKUP}")).await;
    let b = app.get(&format!("/api/v2/integrations/actions/{LOOKUP}")).await;
    let (a, b) =
        (a.header("inin-correlation-id").unwrap().to_string(), b.header("inin-correlation-id").unwrap().to_string());
    assert_ne!(a, b);
    assert!(uuid::Uuid::parse_str(&a).is_ok());
}

#[tokio::test]
async fn the_stats_endpoint_reports_what_it_saw() {
    let app = App::demo().await;
    app.get(&format!("/api/v2/integrations/actions/{LOOKUP}")).await;
    app.get("/api/v2/integrations/actions/custom_-_x").await;
    let stats: serde_json::Value = app.http.get(app.url("/emulator/stats")).send().await.unwrap().json().await.unwrap();
    let route = &stats["requests"]["GET /api/v2/integrations/actions/{actionId}"];
    assert_eq!((route["200"].as_u64(), route["404"].as_u64()), (Some(1), Some(1)));
    assert_eq!(stats["requests"]["POST /oauth/token"]["200"], 1);
    for field in [
        "tooManyRequests",
        "peakConcurrency",
        "currentConcurrency",
        "duplicateSubmissions",
        "duplicateRunNames",
        "tokensIssued",
        "injected",
        "submissions",
    ] {
        assert!(stats.get(field).is_some(), "stats has {field}");
    }
    let r = app.http.post(app.url("/emulator/stats/reset")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let stats = app.emu.emulator.stats();
    assert!(stats.requests.is_empty() || stats.requests.keys().all(|k| k.contains("/emulator/")));
}
