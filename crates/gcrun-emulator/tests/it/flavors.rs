use std::time::Duration;

use gcrun_emulator::{EmulatorConfig, Timings};
use gcrun_harness::wait_until;
use serde_json::{Value, json};

use crate::{App, CALLBACK, LOOKUP, ORDER_FLOW, keys};

fn quick() -> EmulatorConfig {
    EmulatorConfig {
        timings: Timings {
            queued_for: Duration::from_millis(150),
            running_for: Duration::from_millis(300),
            execute_for: Duration::from_millis(10),
        },
        ..EmulatorConfig::default()
    }
}

async fn poll_until(app: &App, path: &str, status: &str) -> Value {
    wait_until(&format!("{path} to be {status}"), Duration::from_secs(5), || async {
        let r = app.get(path).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        (r.body["status"] == status).then_some(r.body)
    })
    .await
}

#[tokio::test]
async fn runs_flavor_moves_queued_running_completed() {
    let app = App::start(quick()).await;
    let r = app
        .post(
            "/api/v2/actions/runs",
            json!({"definitionId": LOOKUP, "mode": "async", "runName": "r-1", "inputs": {"customerId": "c-7", "channel": "chat"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(keys(&r.body), vec!["createdAt", "definitionId", "id", "mode", "status", "updatedAt"]);
    assert_eq!((r.body["status"].as_str(), r.body["mode"].as_str()), (Some("queued"), Some("async")));
    assert_eq!(r.body["definitionId"], LOOKUP);
    let path = format!("/api/v2/actions/runs/{}", r.body["id"].as_str().unwrap());

    poll_until(&app, &path, "running").await;
    let done = poll_until(&app, &path, "completed").await;
    assert_eq!(
        keys(&done),
        vec!["completedAt", "createdAt", "definitionId", "id", "mode", "outputs", "status", "updatedAt"]
    );
    assert_eq!(done["outputs"], json!({"customerId": "c-7", "tier": "gold", "openCases": 2}));
    let created = time::OffsetDateTime::parse(
        done["createdAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let completed = time::OffsetDateTime::parse(
        done["completedAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!((completed - created).whole_milliseconds(), 450);
}

#[tokio::test]
async fn runs_flavor_failure_and_transient_errors_from_inputs() {
    let app = App::start(quick()).await;
    let submit = |note: &str| {
        app.post(
            "/api/v2/actions/runs",
            json!({"definitionId": LOOKUP, "mode": "async", "inputs": {"customerId": "c", "channel": "voice", "note": note}}),
        )
    };
    let failing = submit("emulator:fail=crm_down").await;
    let path = format!("/api/v2/actions/runs/{}", failing.body["id"].as_str().unwrap());
    let failed = poll_until(&app, &path, "failed").await;
    assert_eq!(failed["error"]["code"], "crm_down");
    assert!(failed.get("outputs").is_none());

    let flaky = submit("emulator:transient=2/timeout").await;
    let path = format!("/api/v2/actions/runs/{}", flaky.body["id"].as_str().unwrap());
    for _ in 0..2 {
        let r = app.get(&path).await;
        assert_eq!(r.body["error"]["code"], "timeout");
        assert_ne!(r.body["status"], "completed", "a transient error never reports a terminal status");
    }
    let done = poll_until(&app, &path, "completed").await;
    assert!(done.get("error").is_none());
}

#[tokio::test]
async fn runs_flavor_rejects_invalid_submissions_with_error_bodies() {
    let app = App::demo().await;
    let r = app.post("/api/v2/actions/runs", json!({"mode": "async", "inputs": {}})).await;
    r.assert_error(400, "bad.request");
    let r = app.post("/api/v2/actions/runs", json!({"definitionId": LOOKUP, "mode": "sync", "inputs": {}})).await;
    r.assert_error(400, "bad.request");
    let r =
        app.post("/api/v2/actions/runs", json!({"definitionId": "custom_-_x", "mode": "async", "inputs": {}})).await;
    r.assert_error(404, "not.found");
    let r = app
        .post(
            "/api/v2/actions/runs",
            json!({"definitionId": LOOKUP, "mode": "async", "inputs": {"customerId": 7, "extra": 1}}),
        )
        .await;
    r.assert_error(400, "bad.request");
    let mut fields: Vec<&str> =
        r.body["details"].as_array().unwrap().iter().map(|d| d["fieldName"].as_str().unwrap()).collect();
    fields.sort();
    assert_eq!(fields, vec!["channel", "customerId", "extra"]);
    assert_eq!(app.emu.emulator.stats().submissions, 0, "nothing invalid was started");
}

#[tokio::test]
async fn runs_that_never_finish_stay_running() {
    let app = App::start(quick()).await;
    let r = app
        .post("/api/v2/actions/runs", json!({"definitionId": LOOKUP, "mode": "async", "inputs": {"customerId": "c", "channel": "chat", "note": "emulator:never"}}))
        .await;
    let path = format!("/api/v2/actions/runs/{}", r.body["id"].as_str().unwrap());
    poll_until(&app, &path, "running").await;
    let other = app
        .post(
            "/api/v2/actions/runs",
            json!({"definitionId": LOOKUP, "mode": "async", "inputs": {"customerId": "d", "channel": "chat"}}),
        )
        .await;
    // Once a normal run has finished, the `never` run is still running.
    poll_until(&app, &format!("/api/v2/actions/runs/{}", other.body["id"].as_str().unwrap()), "completed").await;
    assert_eq!(app.get(&path).await.body["status"], "running");
    app.get("/api/v2/actions/runs/no-such-run").await.assert_error(404, "not.found");
}

#[tokio::test]
async fn execute_answers_with_the_action_output_or_an_action_error() {
    let app = App::start(quick()).await;
    let path = format!("/api/v2/integrations/actions/{CALLBACK}/execute");
    let r = app.post(&path, json!({"phoneNumber": "+44 20 7946 0000", "priority": 2})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body, json!({"callbackId": "cb-+44 20 7946 0000", "scheduled": true}));

    let r = app.post(&path, json!({"phoneNumber": "+1", "note": "emulator:fail"})).await;
    r.assert_error(500, "internal.server.error");
    assert_eq!(r.body["details"][0]["errorCode"], "ACTION.REMOTE_ENDPOINT");

    let r = app.post(&path, json!({"phoneNumber": "call me", "priority": 9})).await;
    r.assert_error(400, "bad.request");
    assert_eq!(r.body["details"].as_array().unwrap().len(), 2);

    // transient=1: the first identical call is a 503, the next succeeds.
    let body = json!({"phoneNumber": "+2", "note": "emulator:transient=1"});
    app.post(&path, body.clone()).await.assert_error(503, "service.unavailable");
    assert_eq!(app.post(&path, body).await.status, 200);

    app.post("/api/v2/integrations/actions/custom_-_x/execute", json!({})).await.assert_error(404, "not.found");
    app.post(&path, json!([1, 2])).await.assert_error(400, "bad.request");
}

#[tokio::test]
async fn execute_flatten_turns_nested_outputs_into_dotted_keys() {
    let text = gcrun_emulator::fixtures::DEMO_FIXTURES.replace(
        r#""output": { "score": 87, "band": "hot" }"#,
        r#""output": { "score": {"value": 87, "band": "hot"} }"#,
    );
    let config = EmulatorConfig { fixtures: gcrun_emulator::Fixtures::from_json(&text).unwrap(), ..quick() };
    let app = App::start(config).await;
    let path = "/api/v2/integrations/actions/custom_-_1a9c7e5b-3d2f-4b6a-8c0e-5f7a9b1d3e26/execute";
    let nested = app.post(path, json!({"amount": 10})).await;
    assert_eq!(nested.body, json!({"score": {"value": 87, "band": "hot"}}));
    let flat = app.post(&format!("{path}?flatten=true"), json!({"amount": 10})).await;
    assert_eq!(flat.body, json!({"score.value": 87, "score.band": "hot"}));
}

#[tokio::test]
async fn workflow_launch_and_status_have_the_reference_shapes() {
    let app = App::start(quick()).await;
    let r = app
        .post(
            "/api/v2/flows/executions",
            json!({"flowId": ORDER_FLOW, "flowVersion": "4.0", "inputData": {"Flow.OrderId": "o-9"}, "name": "run-1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(keys(&r.body), vec!["flowVersion", "id", "name", "selfUri"]);
    assert_eq!((r.body["name"].as_str(), r.body["flowVersion"].as_str()), (Some("run-1"), Some("4.0")));
    let path = format!("/api/v2/flows/executions/{}", r.body["id"].as_str().unwrap());
    let running = app.get(&path).await;
    assert_eq!(running.body["status"], "RUNNING");
    assert!(running.body.get("dateCompleted").is_none());
    let done = poll_until(&app, &path, "COMPLETED").await;
    assert_eq!(
        keys(&done),
        vec![
            "completionReason",
            "dateCompleted",
            "dateLaunched",
            "flowVersion",
            "id",
            "name",
            "outputData",
            "selfUri",
            "status"
        ]
    );
    assert_eq!(done["outputData"], json!({"Flow.Outcome": "sent", "Flow.OrderId": "o-9"}));

    let failing = app
        .post(
            "/api/v2/flows/executions",
            json!({"flowId": ORDER_FLOW, "inputData": {"Flow.Note": "emulator:fail=E42"}}),
        )
        .await;
    let failed =
        poll_until(&app, &format!("/api/v2/flows/executions/{}", failing.body["id"].as_str().unwrap()), "FAILED").await;
    assert_eq!(failed["flowErrorInfo"]["code"], "E42");
    assert!(failed.get("outputData").is_none());

    app.post("/api/v2/flows/executions", json!({"flowId": "nope"})).await.assert_error(404, "not.found");
    app.post("/api/v2/flows/executions", json!({"flowId": ORDER_FLOW, "flowVersion": "9.9"}))
        .await
        .assert_error(400, "bad.request");
    app.post("/api/v2/flows/executions", json!({"flowId": ORDER_FLOW, "inputData": "x"}))
        .await
        .assert_error(400, "bad.request");
    app.get("/api/v2/flows/executions/nope").await.assert_error(404, "not.found");
    // A runs-flavor id is not a flow execution and vice versa.
    app.get(&path.replace("/flows/executions/", "/actions/runs/")).await.assert_error(404, "not.found");
}

#[tokio::test]
async fn duplicate_run_names_are_counted() {
    let app = App::start(quick()).await;
    for name in ["a", "b", "a", "a"] {
        let r = app
            .post(
                "/api/v2/actions/runs",
                json!({"definitionId": LOOKUP, "runName": name, "inputs": {"customerId": "c", "channel": "chat"}}),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    app.post("/api/v2/flows/executions", json!({"flowId": ORDER_FLOW, "name": "b"})).await;
    let stats = app.emu.emulator.stats();
    assert_eq!(stats.submissions, 5);
    assert_eq!(stats.duplicate_submissions, 3);
    assert_eq!(stats.duplicate_run_names.get("a"), Some(&3));
    assert_eq!(stats.duplicate_run_names.get("b"), Some(&2));
    assert_eq!(stats.requests["POST /api/v2/actions/runs"]["201"], 4);
}

#[tokio::test]
async fn repeated_executes_are_counted() {
    let app = App::start(quick()).await;
    let path = format!("/api/v2/integrations/actions/{CALLBACK}/execute");
    for phone in ["+1 1", "+1 2", "+1 1"] {
        assert_eq!(app.post(&path, json!({"phoneNumber": phone})).await.status, 200);
    }
    let stats = app.emu.emulator.stats();
    assert_eq!((stats.submissions, stats.duplicate_executes), (3, 1));
}
