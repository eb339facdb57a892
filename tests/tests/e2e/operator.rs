//! Operator use cases end to end: what `gcrun dlq` does, through the
//! library calls it prints around.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use gcrun_emulator::EmulatorConfig;
use gcrun_harness::wait_until;
use gcrun_model::WebhookStatus;
use gcrun_producer::operator::Operator;
use gcrun_tests::{LOOKUP, Stack, limiter};
use serde_json::json;

/// A receiver that answers 410 (gone: dead at once) until told to accept.
async fn gone_until(accept: Arc<AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let accept = accept.clone();
            async move { if accept.load(Ordering::SeqCst) { StatusCode::NO_CONTENT } else { StatusCode::GONE } }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn a_requeued_dead_webhook_is_delivered_not_left_pending() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let accept = Arc::new(AtomicBool::new(false));
    let url = gone_until(accept.clone()).await;
    let worker = stack.start_worker(limiter(60_000, 100, 100)).await;
    let doc = json!({"flavor": "execute", "actionId": LOOKUP, "inputs": {"customerId": "wh", "channel": "chat"}, "webhookUrl": url});
    let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
    wait_until("the webhook to die", Duration::from_secs(20), || async {
        let rec = stack.store.get_run(&id).await.unwrap().unwrap();
        (rec.webhook.status == Some(WebhookStatus::Dead)).then_some(())
    })
    .await;
    // The receiver is fixed; the operator sends the webhook again.
    accept.store(true, Ordering::SeqCst);
    let operator = Operator::new(stack.store.clone(), stack.queues.clone());
    let dead = operator.dead_webhooks().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].1.contains("HTTP 410"), "{dead:?}");
    assert_eq!(operator.requeue_webhooks(&[id]).await.unwrap(), vec![id]);
    let rec = wait_until("the requeued webhook to be delivered", Duration::from_secs(20), || async {
        let rec = stack.store.get_run(&id).await.unwrap().unwrap();
        (rec.webhook.status == Some(WebhookStatus::Delivered)).then_some(rec)
    })
    .await;
    worker.stop().await;
    assert_eq!(rec.webhook.epoch, 1);
    assert!(operator.dead_webhooks().await.unwrap().is_empty());
    assert!(operator.requeue_webhooks(&[id]).await.unwrap().is_empty(), "a delivered webhook is not sent again");
}

#[tokio::test]
async fn a_cached_definition_that_does_not_parse_is_read_again_not_skipped() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let now = gcrun_worker::now_ms();
    stack.store.cache_definition(LOOKUP, "{not json", 60_000, now).await.unwrap();
    let deps = stack.deps(limiter(60_000, 100, 100)).await;
    // `channel: fax` breaks the lookup action's contract.
    let doc = json!({"flavor": "execute", "actionId": LOOKUP, "inputs": {"customerId": "c", "channel": "fax"}});
    let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
    deps.submit(id, None).await.unwrap();
    let rec = stack.store.get_run(&id).await.unwrap().unwrap();
    assert_eq!(rec.status, gcrun_model::RunStatus::Rejected, "{:?}", rec.last_error);
    assert!(rec.last_error.unwrap().contains("/inputs/channel"));
    assert_eq!(stack.emu.emulator.stats().submissions, 0, "nothing unvalidated reached Genesys");
}
