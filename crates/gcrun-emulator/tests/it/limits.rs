use std::time::Duration;

use gcrun_emulator::{EmulatorConfig, Limits, Timings};
use serde_json::json;

use crate::{App, LOOKUP};

fn body(n: usize) -> serde_json::Value {
    json!({"definitionId": LOOKUP, "mode": "async", "runName": format!("r{n}"), "inputs": {"customerId": "c", "channel": "chat"}})
}

#[tokio::test]
async fn the_execution_rate_is_enforced_with_genesys_429s() {
    let config = EmulatorConfig {
        limits: Limits {
            executions_per_window: Some(3),
            window: Duration::from_secs(60),
            max_concurrent: None,
            requests_per_token: None,
        },
        ..EmulatorConfig::default()
    };
    let app = App::start(config).await;
    for n in 0..3 {
        assert_eq!(app.post("/api/v2/actions/runs", body(n)).await.status, 201);
    }
    let r = app.post("/api/v2/actions/runs", body(3)).await;
    r.assert_error(429, "too.many.requests.retry.after");
    let retry_after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After is whole seconds within the window: {retry_after}");
    assert_eq!(r.header("inin-ratelimit-allowed"), Some("3"));
    assert_eq!(r.header("inin-ratelimit-count"), Some("3"));
    assert!(r.header("inin-ratelimit-reset").is_some());
    assert_eq!(r.body["limit"]["value"], 3);
    assert!(r.body["message"].as_str().unwrap().contains(&format!("[{retry_after}] seconds")));
    // Reads are not executions.
    assert_eq!(app.get(&format!("/api/v2/integrations/actions/{LOOKUP}")).await.status, 200);
    let stats = app.emu.emulator.stats();
    assert_eq!((stats.submissions, stats.limit_429s, stats.too_many_requests), (3, 1, 1));
}

#[tokio::test]
async fn the_window_slides() {
    let config = EmulatorConfig {
        limits: Limits {
            executions_per_window: Some(2),
            window: Duration::from_millis(400),
            max_concurrent: None,
            requests_per_token: None,
        },
        ..EmulatorConfig::default()
    };
    let app = App::start(config).await;
    assert_eq!(app.post("/api/v2/actions/runs", body(0)).await.status, 201);
    assert_eq!(app.post("/api/v2/actions/runs", body(1)).await.status, 201);
    assert_eq!(app.post("/api/v2/actions/runs", body(2)).await.status, 429);
    gcrun_harness::wait_until("the rate window to slide", Duration::from_secs(5), || async {
        (app.post("/api/v2/actions/runs", body(3)).await.status == 201).then_some(())
    })
    .await;
}

#[tokio::test]
async fn concurrency_counts_runs_in_progress_and_frees_up_as_they_end() {
    let config = EmulatorConfig {
        limits: Limits {
            executions_per_window: None,
            window: Duration::from_secs(60),
            max_concurrent: Some(2),
            requests_per_token: None,
        },
        timings: Timings {
            queued_for: Duration::from_millis(100),
            running_for: Duration::from_millis(400),
            execute_for: Duration::ZERO,
        },
        ..EmulatorConfig::default()
    };
    let app = App::start(config).await;
    assert_eq!(app.post("/api/v2/actions/runs", body(0)).await.status, 201);
    assert_eq!(app.post("/api/v2/actions/runs", body(1)).await.status, 201);
    let r = app.post("/api/v2/actions/runs", body(2)).await;
    r.assert_error(429, "too.many.requests.retry.after");
    assert_eq!(r.header("retry-after"), Some("1"), "the first run ends within a second");
    assert_eq!(r.body["limit"]["key"], "executions.concurrent");
    let stats = app.emu.emulator.stats();
    assert_eq!((stats.peak_concurrency, stats.current_concurrency), (2, 2));
    gcrun_harness::wait_until("a slot to free up", Duration::from_secs(5), || async {
        (app.post("/api/v2/actions/runs", body(3)).await.status == 201).then_some(())
    })
    .await;
    assert_eq!(app.emu.emulator.stats().peak_concurrency, 2, "never more than the limit");
}

#[tokio::test]
async fn execute_calls_hold_a_concurrency_slot_while_they_run() {
    let config = EmulatorConfig {
        limits: Limits {
            executions_per_window: None,
            window: Duration::from_secs(60),
            max_concurrent: Some(1),
            requests_per_token: None,
        },
        timings: Timings { execute_for: Duration::from_millis(600), ..Timings::default() },
        ..EmulatorConfig::default()
    };
    let app = App::start(config).await;
    let path = format!("/api/v2/integrations/actions/{LOOKUP}/execute");
    let input = json!({"customerId": "c", "channel": "chat"});
    let (slow, blocked) = tokio::join!(app.post(&path, input.clone()), async {
        // Wait until the first call holds the slot, then try a second.
        gcrun_harness::wait_until("the first call to hold the slot", Duration::from_secs(5), || async {
            (app.emu.emulator.stats().current_concurrency == 1).then_some(())
        })
        .await;
        app.post(&path, input.clone()).await
    });
    assert_eq!(slow.status, 200);
    blocked.assert_error(429, "too.many.requests.retry.after");
    assert_eq!(app.emu.emulator.stats().current_concurrency, 0);
    assert_eq!(app.post(&path, input).await.status, 200);
}

#[tokio::test]
async fn the_per_token_request_limit_is_opt_in() {
    let config = EmulatorConfig {
        limits: Limits { requests_per_token: Some(2), ..Limits::default() },
        ..EmulatorConfig::default()
    };
    let app = App::start(config).await;
    let path = format!("/api/v2/integrations/actions/{LOOKUP}");
    assert_eq!(app.get(&path).await.status, 200);
    assert_eq!(app.get(&path).await.status, 200);
    let r = app.get(&path).await;
    r.assert_error(429, "too.many.requests.retry.after");
    assert_eq!(r.header("inin-ratelimit-allowed"), Some("2"));
}
