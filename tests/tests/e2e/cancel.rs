//! Cancelling a run: through the ingest API by the client that sent it,
//! and with `gcrun runs cancel`. A cancelled run is polled no more, gives
//! back its concurrency slot and sends a webhook that says so.

use std::process::Command;
use std::time::Duration;

use gcrun_emulator::{EmulatorConfig, Timings};
use gcrun_harness::wait_until;
use gcrun_model::RunStatus;
use gcrun_producer::ingest::{IngestClient, IngestConfig};
use gcrun_tests::{LOOKUP, Stack, gcrun_binary, limiter};
use serde_json::{Value, json};

/// Runs that stay running for a minute: long enough to cancel one mid-run.
fn long_runs() -> EmulatorConfig {
    EmulatorConfig {
        timings: Timings {
            queued_for: Duration::from_millis(50),
            running_for: Duration::from_secs(60),
            execute_for: Duration::from_millis(50),
        },
        ..EmulatorConfig::default()
    }
}

fn polls(stack: &Stack) -> u64 {
    stack
        .emu
        .emulator
        .stats()
        .requests
        .iter()
        .filter(|(route, _)| route.starts_with("GET "))
        .flat_map(|(_, s)| s.values())
        .sum()
}

#[tokio::test]
async fn a_client_cancels_its_running_run_polling_stops_the_slot_is_freed_and_the_webhook_says_so() {
    let stack = Stack::start(long_runs(), Duration::from_secs(120)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let clients =
        vec![IngestClient::parse("crm=t0ken-1", 1).unwrap(), IngestClient::parse("other=t0ken-2", 2).unwrap()];
    let config = IngestConfig { clients, ..IngestConfig::default() };
    tokio::spawn(gcrun_producer::ingest::serve(listener, stack.producer.clone(), config, std::future::pending()));
    let http = reqwest::Client::new();
    let worker = stack.start_worker(limiter(60_000, 100, 100)).await;

    let doc = json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": "c", "channel": "chat"}});
    let r: Value = http
        .post(format!("{base}/v1/runs"))
        .bearer_auth("t0ken-1")
        .json(&doc)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id: gcrun_model::RunId = r["runId"].as_str().unwrap().parse().unwrap();
    wait_until("the run to be running remotely", Duration::from_secs(20), || async {
        let rec = stack.store.get_run(&id).await.unwrap().unwrap();
        (rec.status == RunStatus::Running).then_some(())
    })
    .await;
    assert_eq!(worker.deps.limiter().held().await.unwrap(), 1, "the run holds a slot");

    let cancel = |token: &'static str| {
        http.post(format!("{base}/v1/runs/{id}/cancel"))
            .bearer_auth(token)
            .json(&json!({"reason": "customer hung up"}))
            .send()
    };
    assert_eq!(cancel("t0ken-2").await.unwrap().status(), 404, "another client's run is not there to cancel");
    let r = cancel("t0ken-1").await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "cancelling");

    let rec = wait_until("the run to be cancelled", Duration::from_secs(10), || async {
        let rec = stack.store.get_run_with_history(&id).await.unwrap().unwrap();
        (rec.status == RunStatus::Cancelled).then_some(rec)
    })
    .await;
    assert_eq!(rec.transitions.last().unwrap().cause, "cancelled by client crm: customer hung up");
    // Nothing more is scheduled for it, and no poll reaches Genesys again.
    stack.wait_all_terminal(&[id], Duration::from_secs(20)).await;
    let polled = polls(&stack);
    let after = stack.store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(after.poll_attempts, rec.poll_attempts, "no poll after the cancel");
    assert_eq!(worker.deps.limiter().held().await.unwrap(), 0, "the slot was given back");
    let hook = wait_until("the cancelled webhook", Duration::from_secs(20), || async {
        stack.sink.lock().unwrap().accepted.iter().find(|d| d.body["runId"] == id.to_string()).map(|d| d.body.clone())
    })
    .await;
    assert_eq!(hook["status"], "cancelled");
    assert_eq!(hook["success"], false);
    // The delivery is recorded, so nothing owes it again (the webhook step
    // once knew every ended status but `cancelled`, and the sweeper would
    // have sent it again every minute).
    wait_until("the cancelled run's webhook recorded delivered", Duration::from_secs(20), || async {
        let r = stack.store.get_run(&id).await.unwrap().unwrap();
        (r.webhook.status == Some(gcrun_model::WebhookStatus::Delivered)).then_some(())
    })
    .await;
    assert!(hook["error"]["message"].as_str().unwrap().contains("customer hung up"), "{hook}");
    assert_eq!(polls(&stack), polled);

    let again = cancel("t0ken-1").await.unwrap();
    assert_eq!(again.status(), 409);
    assert_eq!(again.json::<Value>().await.unwrap()["status"], "cancelled");
    worker.stop().await;
}

// Multi-threaded: the command runs while this thread waits on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcrun_runs_cancel_ends_a_queued_run_before_it_is_ever_submitted() {
    let stack = Stack::start(long_runs(), Duration::from_secs(120)).await;
    let doc = json!({"flavor": "execute", "actionId": LOOKUP, "inputs": {"customerId": "q", "channel": "chat"}});
    let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
    let gcrun = |args: &[&str]| {
        Command::new(gcrun_binary())
            .args(args)
            .env("REDIS_URL", stack.redis.url())
            .env("GCRUN_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = gcrun(&["runs", "cancel", &id.to_string(), "--by", "bob", "--reason-text", "sent twice"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("cancelling {id}"));
    let missing = gcrun(&["runs", "cancel", &gcrun_model::RunId::new().to_string()]);
    assert_eq!(missing.status.code(), Some(3));

    // No worker ran yet: the first one to see the run ends it.
    let worker = stack.start_worker(limiter(60_000, 100, 100)).await;
    stack.wait_all_terminal(&[id], Duration::from_secs(20)).await;
    worker.stop().await;
    let rec = stack.store.get_run_with_history(&id).await.unwrap().unwrap();
    assert_eq!(rec.status, RunStatus::Cancelled);
    let path: Vec<RunStatus> = rec.transitions.iter().map(|t| t.to).collect();
    assert_eq!(path, vec![RunStatus::Accepted, RunStatus::Cancelled]);
    assert_eq!(rec.transitions[1].cause, "cancelled by bob: sent twice");
    assert_eq!(stack.emu.emulator.stats().submissions, 0, "never submitted");
    assert_eq!(stack.count(RunStatus::Cancelled).await, 1);
}
