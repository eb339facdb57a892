//! Secrets from files, as a mounted Kubernetes Secret gives them, rotated
//! while a real worker process runs: the process reads them again when the
//! file changes, with no restart.

use std::time::Duration;

use gcrun_emulator::EmulatorConfig;
use gcrun_harness::wait_until;
use gcrun_model::{RunStatus, WebhookStatus};
use gcrun_producer::operator::Operator;
use gcrun_tests::{CLIENT_SECRET, HOOK_SECRET, LOOKUP, Stack, signal};
use serde_json::json;

/// Writes `text` the way Kubernetes updates a mounted Secret: a new file
/// renamed over the old one.
fn rotate(path: &std::path::Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

#[tokio::test]
async fn a_worker_reads_its_rotated_client_secret_and_webhook_keys_without_a_restart() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().unwrap();
    let client_secret = dir.path().join("GENESYSCLOUD_OAUTHCLIENT_SECRET");
    let webhook_secret = dir.path().join("GCRUN_WEBHOOK_SECRET");
    std::fs::write(&client_secret, format!("{CLIENT_SECRET}\n")).unwrap();
    // Keys the receiver does not know yet.
    std::fs::write(&webhook_secret, "whsec_b2xkLW9sZC1vbGQtb2xkLW9sZC1vbGQtb2xkLW9sZC1vbGQ=\n").unwrap();
    let mut cmd = stack.worker_process(&[]);
    cmd.env_remove("GENESYSCLOUD_OAUTHCLIENT_SECRET")
        .env_remove("GCRUN_WEBHOOK_SECRET")
        .env("GENESYSCLOUD_OAUTHCLIENT_SECRET_FILE", &client_secret)
        .env("GCRUN_WEBHOOK_SECRET_FILE", &webhook_secret);
    let mut worker = Reaped(cmd.spawn().unwrap());
    let enqueue = |customer: &str| {
        let doc =
            json!({"flavor": "execute", "actionId": LOOKUP, "inputs": {"customerId": customer, "channel": "chat"}});
        let producer = stack.producer.clone();
        async move { producer.enqueue_value(&doc).await.unwrap().run_id }
    };

    // The first run completes; its webhook, signed with keys the receiver
    // does not know, is refused and dead.
    let first = enqueue("r1").await;
    let rec = wait_until("the webhook signed with the old keys to die", Duration::from_secs(30), || async {
        let r = stack.store.get_run(&first).await.unwrap().unwrap();
        (r.webhook.status == Some(WebhookStatus::Dead)).then_some(r)
    })
    .await;
    assert_eq!(rec.status, RunStatus::Completed);
    assert!(stack.sink.lock().unwrap().bad_signatures >= 1);

    // Rotate the webhook keys (old and new while receivers move, then the
    // new alone); the requeued webhook is signed with the new keys.
    rotate(&webhook_secret, HOOK_SECRET);
    let operator = Operator::new(stack.store.clone(), stack.queues.clone());
    assert_eq!(operator.requeue_webhooks(&[first]).await.unwrap(), vec![first]);
    wait_until("the webhook signed with the rotated keys", Duration::from_secs(30), || async {
        let r = stack.store.get_run(&first).await.unwrap().unwrap();
        (r.webhook.status == Some(WebhookStatus::Delivered)).then_some(())
    })
    .await;

    // Rotate the client secret to one Genesys refuses and drop the tokens
    // issued: the next token request reads the file, so the next run is
    // refused. Had the process kept the secret it started with, it would
    // have got a new token and completed.
    rotate(&client_secret, "a-secret-genesys-does-not-know");
    stack.emu.emulator.revoke_tokens();
    let refused = enqueue("r2").await;
    let rec = wait_until("the run to be refused with the rotated secret", Duration::from_secs(30), || async {
        let r = stack.store.get_run(&refused).await.unwrap().unwrap();
        r.status.is_terminal().then_some(r)
    })
    .await;
    assert_eq!(rec.status, RunStatus::Dead, "{:?}", rec.last_error);
    assert!(rec.last_error.as_deref().unwrap_or_default().contains("oauth/token"), "{:?}", rec.last_error);
    assert!(!rec.last_error.unwrap_or_default().contains("a-secret-genesys"), "the secret is never shown");

    // The right secret back: the next run completes.
    rotate(&client_secret, CLIENT_SECRET);
    let third = enqueue("r3").await;
    let rec = wait_until("a run with the secret rotated back to end", Duration::from_secs(30), || async {
        let r = stack.store.get_run(&third).await.unwrap().unwrap();
        r.status.is_terminal().then_some(r)
    })
    .await;
    assert_eq!(rec.status, RunStatus::Completed, "{:?}", rec.last_error);
    signal(&worker.0, "TERM");
    assert!(worker.0.wait().unwrap().success());
}

/// The worker process, killed if the test fails before it stops it.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
