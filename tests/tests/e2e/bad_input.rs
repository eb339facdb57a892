//! The bad-input table: hostile or broken input at every door. Each case
//! gets a clear error at the door (naming where the input is wrong) or a
//! dead-letter entry with a stored reason; nothing else is disturbed and no
//! worker exits (a good run still completes after all of them).

use std::time::Duration;

use gcrun_emulator::EmulatorConfig;
use gcrun_harness::wait_until;
use gcrun_producer::ProducerError;
use gcrun_queue::engine::Queue;
use gcrun_tests::{LOOKUP, Stack, limiter};
use serde_json::{Value, json};

/// Requests the library door refuses, with the path the violation names.
fn refused_requests() -> Vec<(&'static str, Value, &'static str)> {
    let long = "x".repeat(10_001);
    vec![
        ("not an object", json!([1, 2]), ""),
        ("no flavor", json!({"actionId": LOOKUP}), "/flavor"),
        ("unknown flavor", json!({"flavor": "batch", "actionId": LOOKUP}), "/flavor"),
        ("runs without an action", json!({"flavor": "runs", "inputs": {}}), "/actionId"),
        ("workflow without a flow", json!({"flavor": "workflow", "inputs": {}}), "/flowId"),
        ("inputs not an object", json!({"flavor": "runs", "actionId": LOOKUP, "inputs": 5}), "/inputs"),
        ("a nested input", json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"a": {"b": 1}}}), "/inputs/a"),
        ("an array input", json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"a": [1]}}), "/inputs/a"),
        ("a reserved input", json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"orgId": "x"}}), "/inputs/orgId"),
        ("a bad input name", json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"1abc": "x"}}), "/inputs/1abc"),
        ("an oversized string", json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"x": long}}), "/inputs/x"),
        (
            "an id that bends URLs",
            json!({"flavor": "runs", "actionId": "../../oauth/token", "inputs": {}}),
            "/actionId",
        ),
        (
            "an idempotency key that is not text",
            json!({"flavor": "runs", "actionId": LOOKUP, "idempotencyKey": 42}),
            "/idempotencyKey",
        ),
        ("a flow id that bends URLs", json!({"flavor": "workflow", "flowId": "a/b?c", "inputs": {}}), "/flowId"),
        ("an unknown field", json!({"flavor": "runs", "actionId": LOOKUP, "extra": 1}), "/extra"),
        ("an ftp webhook", json!({"flavor": "runs", "actionId": LOOKUP, "webhookUrl": "ftp://h/x"}), "/webhookUrl"),
        (
            "a javascript webhook",
            json!({"flavor": "runs", "actionId": LOOKUP, "webhookUrl": "javascript:alert(1)"}),
            "/webhookUrl",
        ),
        (
            "a webhook with credentials",
            json!({"flavor": "runs", "actionId": LOOKUP, "webhookUrl": "https://u:p@h/x"}),
            "/webhookUrl",
        ),
        ("a relative webhook", json!({"flavor": "runs", "actionId": LOOKUP, "webhookUrl": "/hooks"}), "/webhookUrl"),
        (
            "a metadata-service webhook",
            json!({"flavor": "runs", "actionId": LOOKUP, "webhookUrl": "http://169.254.169.254/latest/meta-data"}),
            "/webhookUrl",
        ),
        (
            "a loopback webhook",
            json!({"flavor": "runs", "actionId": LOOKUP, "webhookUrl": "http://127.0.0.1:9/x"}),
            "/webhookUrl",
        ),
        (
            "a localhost webhook",
            json!({"flavor": "runs", "actionId": LOOKUP, "webhookUrl": "http://localhost/x"}),
            "/webhookUrl",
        ),
        ("nested metadata", json!({"flavor": "runs", "actionId": LOOKUP, "metadata": {"k": {"x": 1}}}), "/metadata/k"),
    ]
}

/// Payloads pushed straight into a queue, as foreign data or a bug might.
fn hostile_payloads(queue: Queue) -> Vec<(String, String)> {
    let name = queue.name();
    vec![
        (format!("{name}-not-json"), "\u{1}garbage".to_string()),
        (format!("{name}-wrong-shape"), r#"{"foo":1}"#.to_string()),
        (format!("{name}-bad-uuid"), r#"{"v":1,"run":"not-a-uuid","attempt":0}"#.to_string()),
        (format!("{name}-wrong-types"), r#"{"v":1,"run":7,"attempt":"zero"}"#.to_string()),
        (format!("{name}-huge"), format!(r#"{{"v":1,"run":"{}"}}"#, "z".repeat(1_000_000))),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_door_refuses_bad_input_clearly_and_nothing_else_is_disturbed() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let worker = stack.start_worker(limiter(60_000, 100, 100)).await;
    let mut cases = 0;

    // The library door (the HTTP and CLI doors parse through the same code),
    // with the default limits (the test stack's own producer lets webhooks
    // reach its loopback receiver).
    let producer = gcrun_producer::Producer::new(
        stack.store.clone(),
        stack.queues.clone(),
        gcrun_producer::ProducerConfig::default(),
    );
    for (what, doc, path) in refused_requests() {
        match producer.enqueue_value(&doc).await {
            Err(ProducerError::Invalid(v)) => {
                assert!(v.0.iter().any(|x| x.path == path), "{what}: no violation at `{path}`: {v}");
            }
            other => panic!("{what}: accepted or failed otherwise: {other:?}"),
        }
        cases += 1;
    }

    // Hostile jobs straight into every queue: each ends in that queue's dead
    // set with a reason.
    for queue in Queue::ALL {
        let payloads = hostile_payloads(queue);
        for (id, payload) in &payloads {
            assert!(stack.queues.engine().push_raw(queue, id, payload).await.unwrap());
        }
        let dead = wait_until(
            &format!("the {} queue's hostile jobs in its dead set", queue.name()),
            Duration::from_secs(20),
            || async {
                let dead = stack.queues.dead_jobs(queue.name(), 0, 100).await.unwrap();
                (dead.len() >= payloads.len()).then_some(dead)
            },
        )
        .await;
        for (id, _) in &payloads {
            let entry = dead.iter().find(|d| &d.id == id).unwrap_or_else(|| panic!("{id} is not in the dead set"));
            assert!(!entry.reason.as_deref().unwrap_or("").is_empty(), "{id}: no reason stored");
        }
        cases += payloads.len();
    }

    // The HTTP door: bodies that are not what they claim.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let config = gcrun_producer::ingest::IngestConfig {
        clients: vec![gcrun_producer::ingest::IngestClient::parse("bad-input=t0ken-bad-input", 1).unwrap()],
        body_limit: 256 * 1024,
        ..Default::default()
    };
    tokio::spawn(gcrun_producer::ingest::serve(listener, stack.producer.clone(), config, std::future::pending()));
    let http = reqwest::Client::new();
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bodies: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("invalid UTF-8", "/v1/runs", vec![b'{', 0xff, 0xfe, b'}'], 400),
        ("not JSON", "/v1/runs", b"flavor=runs".to_vec(), 400),
        ("deep nesting", "/v1/runs", deep.into_bytes(), 400),
        ("a batch that is not a list", "/v1/runs/batch", br#"{"flavor":"runs"}"#.to_vec(), 400),
        ("a body over the limit", "/v1/runs", vec![b' '; 300 * 1024], 413),
    ];
    for (what, path, body, status) in bodies {
        let resp = http
            .post(format!("{base}{path}"))
            .bearer_auth("t0ken-bad-input")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{what}");
        let text = resp.text().await.unwrap();
        assert!(!text.is_empty(), "{what}: a body that says why");
        cases += 1;
    }

    // Nothing else was disturbed: a good run goes through, and nothing
    // was recorded for any refused request.
    assert_eq!(stack.store.counts().await.unwrap().get("total").copied().unwrap_or(0), 0, "refused at the door");
    let doc = json!({"flavor": "execute", "actionId": LOOKUP, "inputs": {"customerId": "ok", "channel": "chat"}});
    let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
    stack.wait_all_terminal(&[id], Duration::from_secs(20)).await;
    assert_eq!(stack.store.get_run(&id).await.unwrap().unwrap().status, gcrun_model::RunStatus::Completed);
    worker.stop().await;
    eprintln!("{cases} bad inputs refused or dead-lettered with a reason");
    assert!(cases >= 40);
}
