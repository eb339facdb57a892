use std::time::Duration;

use gcrun_emulator::{EmulatorConfig, Faults};
use serde_json::json;

use crate::{App, LOOKUP};

fn with_faults(faults: Faults) -> EmulatorConfig {
    EmulatorConfig { faults, ..EmulatorConfig::default() }
}

fn action() -> String {
    format!("/api/v2/integrations/actions/{LOOKUP}")
}

#[tokio::test]
async fn injected_429s_carry_retry_after_and_a_budget_makes_them_exact() {
    let app =
        App::start(with_faults(Faults { rate_429: 1.0, retry_after_secs: 7, budget: Some(2), ..Faults::default() }))
            .await;
    for _ in 0..2 {
        let r = app.get(&action()).await;
        r.assert_error(429, "too.many.requests.retry.after");
        assert_eq!(r.header("retry-after"), Some("7"));
    }
    assert_eq!(app.get(&action()).await.status, 200, "budget spent");
    let stats = app.emu.emulator.stats();
    assert_eq!((stats.injected.too_many_requests, stats.too_many_requests, stats.limit_429s), (2, 2, 0));
    // OAuth is not faulted unless asked.
    app.fetch_token().await;
}

#[tokio::test]
async fn injected_server_errors_use_the_configured_status() {
    for (status, code) in
        [(500, "internal.server.error"), (502, "bad.gateway"), (503, "service.unavailable"), (504, "gateway.timeout")]
    {
        let app = App::start(with_faults(Faults { rate_5xx: 1.0, status_5xx: status, ..Faults::default() })).await;
        app.get(&action()).await.assert_error(status, code);
    }
}

#[tokio::test]
async fn dropped_connections_cut_the_answer_off() {
    let app = App::start(with_faults(Faults { rate_drop: 1.0, budget: Some(1), ..Faults::default() })).await;
    let r = app.http.get(app.url(&action())).bearer_auth(&app.token).send().await;
    let outcome = match r {
        Err(e) => e.to_string(),
        Ok(resp) => {
            resp.bytes().await.map(|b| format!("got {} bytes", b.len())).unwrap_or_else(|e| format!("body error: {e}"))
        }
    };
    assert!(!outcome.starts_with("got"), "the response must not arrive whole: {outcome}");
    assert_eq!(app.get(&action()).await.status, 200, "the server itself is fine");
    let stats = app.emu.emulator.stats();
    assert_eq!(stats.injected.dropped, 1);
    assert_eq!(stats.requests["GET /api/v2/integrations/actions/{actionId}"]["dropped"], 1);
}

#[tokio::test]
async fn malformed_bodies_are_truncated_json_after_the_work_is_done() {
    let app = App::start(with_faults(Faults { rate_malformed: 1.0, budget: Some(1), ..Faults::default() })).await;
    let r = app
        .post(
            "/api/v2/actions/runs",
            json!({"definitionId": LOOKUP, "runName": "m", "inputs": {"customerId": "c", "channel": "chat"}}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert!(r.body.is_string(), "not JSON: {:?}", r.body);
    // The run was created even though its answer was garbled.
    assert_eq!(app.emu.emulator.stats().submissions, 1);
}

#[tokio::test]
async fn run_errors_show_as_transient_codes_on_polls() {
    let app = App::start(with_faults(Faults { rate_run_error: 1.0, budget: Some(3), ..Faults::default() })).await;
    let r = app
        .post("/api/v2/actions/runs", json!({"definitionId": LOOKUP, "inputs": {"customerId": "c", "channel": "chat"}}))
        .await;
    let path = format!("/api/v2/actions/runs/{}", r.body["id"].as_str().unwrap());
    for _ in 0..3 {
        let r = app.get(&path).await;
        assert_eq!(r.status, 200);
        let code = r.body["error"]["code"].as_str().unwrap();
        assert!(["compute_unavailable", "timeout"].contains(&code), "{code}");
    }
    assert!(app.get(&path).await.body.get("error").is_none());
    assert_eq!(app.emu.emulator.stats().injected.run_errors, 3);
}

#[tokio::test]
async fn the_same_seed_gives_the_same_faults() {
    async fn pattern(seed: u64) -> Vec<u16> {
        let config =
            EmulatorConfig { seed, faults: Faults { rate_5xx: 0.5, ..Faults::default() }, ..EmulatorConfig::default() };
        let app = App::start(config).await;
        let mut out = Vec::new();
        for _ in 0..24 {
            out.push(app.get(&action()).await.status);
        }
        out
    }
    let a = pattern(42).await;
    assert_eq!(a, pattern(42).await);
    assert_ne!(a, pattern(43).await);
    assert!(a.contains(&200) && a.contains(&503));
}

#[tokio::test]
async fn latency_delays_answers() {
    let app = App::start(with_faults(Faults { latency: Duration::from_millis(300), ..Faults::default() })).await;
    let started = std::time::Instant::now();
    assert_eq!(app.get(&action()).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn faults_are_changed_and_checked_through_the_admin_api() {
    let app = App::demo().await;
    let url = app.url("/emulator/faults");
    let r = app.http.put(&url).json(&json!({"rate5xx": 1.0, "status5xx": 502, "budget": 1})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let now: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (now["rate5xx"].as_f64(), now["status5xx"].as_u64(), now["rate429"].as_f64()),
        (Some(1.0), Some(502), Some(0.0))
    );
    app.get(&action()).await.assert_error(502, "bad.gateway");
    assert_eq!(app.get(&action()).await.status, 200);

    for bad in [json!({"rate429": 1.5}), json!({"status5xx": 404}), json!({"rate_429": 0.1}), json!("x")] {
        let r = crate::Reply::from(app.http.put(&url).json(&bad).send().await.unwrap()).await;
        r.assert_error(400, "bad.request");
    }
    let current: serde_json::Value = app.http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(current["status5xx"], 502, "a refused update changes nothing");
}

#[tokio::test]
async fn oauth_faults_are_opt_in() {
    let app = App::demo().await;
    app.http
        .put(app.url("/emulator/faults"))
        .json(&json!({"rate5xx": 1.0, "oauth": true, "budget": 1}))
        .send()
        .await
        .unwrap();
    let r = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(crate::CLIENT_ID, Some(crate::CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
}
