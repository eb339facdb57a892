use gcrun_model::{RunId, RunStatus, WebhookStatus};
use gcrun_store::{RunUpdate, Store, WebhookAttempt, WebhookRequeue};

use crate::{request, store};

/// A completed run whose webhook is owed.
async fn ended(store: &Store) -> RunId {
    let id = RunId::new();
    store.create_run(id, &request(None), 1, 100_000).await.unwrap();
    for (from, to) in [
        (RunStatus::Accepted, RunStatus::Validated),
        (RunStatus::Validated, RunStatus::Submitted),
        (RunStatus::Submitted, RunStatus::Completed),
    ] {
        let update =
            if to == RunStatus::Completed { RunUpdate::default().webhook_owed() } else { RunUpdate::default() };
        store.transition(&id, from, to, 10, "step", &update).await.unwrap();
    }
    id
}

#[tokio::test]
async fn each_attempt_is_recorded_once_and_a_settled_webhook_stays_settled() {
    let (_redis, store) = store().await;
    let id = ended(&store).await;
    let failed = WebhookAttempt::Failed { reason: "HTTP 503".into() };
    assert!(store.webhook_attempt(&id, 0, &failed, 20).await.unwrap());
    assert!(!store.webhook_attempt(&id, 0, &failed, 21).await.unwrap(), "a duplicate of attempt 0 does nothing");
    assert!(store.webhook_attempt(&id, 1, &WebhookAttempt::Delivered { at_ms: 30 }, 30).await.unwrap());
    let rec = store.get_run(&id).await.unwrap().unwrap();
    assert_eq!((rec.webhook.status, rec.webhook.attempts), (Some(WebhookStatus::Delivered), 2));
    assert_eq!((rec.webhook.delivered_ms, rec.webhook.last_error.as_deref()), (Some(30), Some("HTTP 503")));
    // delivered is final: no late copy can turn it dead.
    let dead = WebhookAttempt::Dead { reason: "late copy".into() };
    assert!(!store.webhook_attempt(&id, 2, &dead, 40).await.unwrap());
    assert_eq!(store.get_run(&id).await.unwrap().unwrap().webhook.status, Some(WebhookStatus::Delivered));
    assert!(store.webhook_dlq().await.unwrap().is_empty());
    assert_eq!(store.webhook_requeue(&id).await.unwrap(), WebhookRequeue::NotDead);
}

#[tokio::test]
async fn a_dead_webhook_is_indexed_and_a_requeue_opens_a_new_epoch() {
    let (_redis, store) = store().await;
    let id = ended(&store).await;
    let before = store.get_run(&id).await.unwrap().unwrap().webhook_generation();
    let dead = WebhookAttempt::Dead { reason: "HTTP 410".into() };
    assert!(store.webhook_attempt(&id, 0, &dead, 20).await.unwrap());
    assert_eq!(store.webhook_dlq().await.unwrap(), vec![id]);
    assert_eq!(store.webhook_requeue(&id).await.unwrap(), WebhookRequeue::Requeued { epoch: 1 });
    let rec = store.get_run(&id).await.unwrap().unwrap();
    assert_eq!((rec.webhook.status, rec.webhook.attempts, rec.webhook.epoch), (Some(WebhookStatus::Pending), 0, 1));
    assert_ne!(rec.webhook_generation(), before, "the new chain's job ids differ from the old one's");
    assert!(store.webhook_dlq().await.unwrap().is_empty());
    assert_eq!(store.webhook_requeue(&id).await.unwrap(), WebhookRequeue::NotDead, "only a dead webhook is requeued");
    assert!(store.webhook_requeue(&RunId::new()).await.is_err());
}

#[tokio::test]
async fn a_requeued_run_owes_a_new_webhook_and_old_attempts_do_not_touch_it() {
    let (_redis, store) = store().await;
    let id = ended(&store).await;
    // Make it dead-lettered with a dead webhook, then requeue the run.
    let id2 = RunId::new();
    store.create_run(id2, &request(None), 1, 100_000).await.unwrap();
    store
        .transition(&id2, RunStatus::Accepted, RunStatus::Dead, 5, "gave up", &RunUpdate::default().webhook_owed())
        .await
        .unwrap();
    assert!(store.webhook_attempt(&id2, 0, &WebhookAttempt::Dead { reason: "410".into() }, 6).await.unwrap());
    assert_eq!(store.webhook_dlq().await.unwrap(), vec![id2]);
    store.dlq_requeue(&id2, 7).await.unwrap();
    let rec = store.get_run(&id2).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.webhook.status, rec.webhook.last_error), (RunStatus::Accepted, None, None));
    assert!(store.webhook_dlq().await.unwrap().is_empty(), "the old webhook is not owed any more");
    // A delivery from before the requeue finds the run going again.
    let late = WebhookAttempt::Delivered { at_ms: 8 };
    assert!(!store.webhook_attempt(&id2, 0, &late, 8).await.unwrap());
    assert!(store.webhook_attempt(&id, 0, &late, 8).await.unwrap(), "an ended run's webhook still records");
}

#[tokio::test]
async fn a_guarded_transition_needs_its_counter_too() {
    use gcrun_store::{Counter, TransitionOutcome};
    let (_redis, store) = store().await;
    let id = RunId::new();
    store.create_run(id, &request(None), 1, 100_000).await.unwrap();
    store.transition(&id, RunStatus::Accepted, RunStatus::Validated, 2, "v", &RunUpdate::default()).await.unwrap();
    store.transition(&id, RunStatus::Validated, RunStatus::Submitted, 3, "s", &RunUpdate::default()).await.unwrap();
    assert!(store.advance(&id, Counter::Poll, 0, RunStatus::Submitted, &RunUpdate::default()).await.unwrap());
    let stale = store
        .transition_guarded(
            &id,
            RunStatus::Submitted,
            RunStatus::Running,
            (Counter::Poll, 0),
            4,
            "old copy",
            &RunUpdate::default(),
        )
        .await
        .unwrap();
    assert_eq!(stale, TransitionOutcome::Stale(RunStatus::Submitted));
    let fresh = store
        .transition_guarded(
            &id,
            RunStatus::Submitted,
            RunStatus::Running,
            (Counter::Poll, 1),
            5,
            "poll 1",
            &RunUpdate::default(),
        )
        .await
        .unwrap();
    assert_eq!(fresh, TransitionOutcome::Applied);
}

#[tokio::test]
async fn an_ended_run_with_an_unreadable_record_gets_a_dead_webhook() {
    let (redis, store) = store().await;
    let id = ended(&store).await;
    let mut conn = crate::raw(&redis).await;
    let _: () = redis::cmd("HSET")
        .arg(gcrun_store::keys::Keys::default().run(&id))
        .arg("request")
        .arg("[]")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(store.quarantine(&id, "request no longer parses", 20).await.unwrap());
    assert_eq!(store.webhook_dlq().await.unwrap(), vec![id]);
    assert!(!store.quarantine(&id, "again", 21).await.unwrap(), "once");
}
