//! Secrets never show: across a full run through every door (HTTP ingest
//! with a bearer token, a worker against a password-protected Redis and the
//! emulator's OAuth, signed webhooks to a URL with a token in its query),
//! at trace log level, no client secret, access token, ingest token,
//! webhook secret, webhook query token or Redis password appears in either
//! process's logs, in the dead-letter entries, in the run views or in the
//! webhook bodies.

use std::process::{Command, Stdio};
use std::time::Duration;

use gcrun_emulator::EmulatorConfig;
use gcrun_harness::{RedisOptions, free_port, wait_until};
use gcrun_model::RunId;
use gcrun_tests::{CLIENT_SECRET, HOOK_SECRET, LOOKUP, Logged, ORDER_FLOW, Stack, gcrun_binary};
use serde_json::{Value, json};

const REDIS_PASSWORD: &str = "r3dis-pa55-w0rd-9f2c";
const INGEST_TOKEN: &str = "ingest-t0ken-7d41e0";
const QUERY_TOKEN: &str = "hook-query-s3cret-55aa";

fn logged(cmd: Command, dir: &std::path::Path, name: &str) -> Logged {
    Logged::spawn(cmd, dir, name, "trace")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_shows_anywhere_at_trace_level() {
    let options = RedisOptions { password: Some(REDIS_PASSWORD), ..RedisOptions::default() };
    let stack = Stack::start_with(EmulatorConfig::default(), Duration::from_secs(60), options).await;
    let dir = tempfile::tempdir().unwrap();

    let port = free_port();
    let mut ingest = Command::new(gcrun_binary());
    ingest
        .args(["ingest", "--listen", &format!("127.0.0.1:{port}")])
        .env("REDIS_URL", stack.redis.url())
        .env("GCRUN_INGEST_TOKENS", INGEST_TOKEN)
        .env("GCRUN_WEBHOOK_PRIVATE_NETWORKS", "true")
        .stdout(Stdio::null());
    let ingest = logged(ingest, dir.path(), "ingest");
    let worker = logged(stack.worker_process(&[]), dir.path(), "worker");

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let hook = format!("{}?token={QUERY_TOKEN}", stack.hook_url);
    wait_until("the ingest server", Duration::from_secs(20), || async {
        http.get(format!("{base}/v1/openapi.json")).send().await.ok().map(|_| ())
    })
    .await;
    let refused = http
        .post(format!("{base}/v1/runs"))
        .bearer_auth("wrong-token-value")
        .json(&json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let docs = [
        json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": "s1", "channel": "chat"}, "webhookUrl": hook}),
        json!({"flavor": "execute", "actionId": LOOKUP, "inputs": {"customerId": "s2", "channel": "chat"}, "webhookUrl": hook}),
        json!({"flavor": "workflow", "flowId": ORDER_FLOW, "inputs": {"Flow.OrderId": "s3"}, "webhookUrl": hook}),
        // Rejected by the contract: lands in the dead-letter set.
        json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": "s4", "channel": "fax"}, "webhookUrl": hook}),
    ];
    let mut ids = Vec::new();
    for doc in &docs {
        let resp = http.post(format!("{base}/v1/runs")).bearer_auth(INGEST_TOKEN).json(doc).send().await.unwrap();
        assert_eq!(resp.status(), 202);
        let body: Value = resp.json().await.unwrap();
        ids.push(body["runId"].as_str().unwrap().parse::<RunId>().unwrap());
    }
    stack.wait_all_terminal(&ids, Duration::from_secs(60)).await;
    wait_until("every webhook delivered", Duration::from_secs(30), || async {
        (stack.sink.lock().unwrap().unique_events() == ids.len()).then_some(())
    })
    .await;
    let mut views = Vec::new();
    for id in &ids {
        let resp = http.get(format!("{base}/v1/runs/{id}")).bearer_auth(INGEST_TOKEN).send().await.unwrap();
        views.push(resp.text().await.unwrap());
    }
    let tokens = stack.emu.emulator.live_tokens();
    assert!(!tokens.is_empty(), "the worker got an access token");
    let worker_log = worker.stop().1;
    let ingest_log = ingest.stop().1;
    assert!(worker_log.contains("TRACE") || worker_log.contains("DEBUG"), "trace logging was on");

    let entries = stack.store.dlq_list(&gcrun_store::DlqFilter::default()).await.unwrap();
    assert!(!entries.is_empty(), "the rejected run is in the dead-letter set");
    let views_of_dead: Vec<gcrun_store::RunView> = entries.iter().map(gcrun_store::RunView::from).collect();
    let dead_json = serde_json::to_string(&views_of_dead).unwrap();
    let dead_debug: String = entries.iter().map(|r| format!("{r:?}")).collect();
    let dead = dead_json + &dead_debug;
    let hooks: Vec<String> = stack.sink.lock().unwrap().accepted.iter().map(|d| d.body.to_string()).collect();
    let key_part = HOOK_SECRET.trim_start_matches("whsec_");
    let mut secrets = vec![CLIENT_SECRET, HOOK_SECRET, key_part, INGEST_TOKEN, REDIS_PASSWORD, QUERY_TOKEN];
    secrets.extend(tokens.iter().map(String::as_str));
    for (place, text) in [("worker log", &worker_log), ("ingest log", &ingest_log), ("dead-letter entries", &dead)]
        .into_iter()
        .chain(views.iter().map(|v| ("run view", v)))
        .chain(hooks.iter().map(|h| ("webhook body", h)))
    {
        for secret in &secrets {
            assert!(!text.contains(secret), "a secret ({}...) shows in the {place}", &secret[..4]);
        }
    }
    eprintln!(
        "checked {} KiB of trace logs, {} run views, {} webhook bodies and the dead-letter set for {} secrets",
        (worker_log.len() + ingest_log.len()) / 1024,
        views.len(),
        hooks.len(),
        secrets.len()
    );
}
