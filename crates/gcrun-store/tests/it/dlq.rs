use gcrun_model::{Flavor, RunId, RunStatus};
use gcrun_store::{DlqFilter, RunUpdate};

use crate::{request, store};

async fn dead(store: &gcrun_store::Store, status: RunStatus, reason: &str, at: u64) -> RunId {
    let id = RunId::new();
    store.create_run(id, &request(None), at, at + 1_000).await.unwrap();
    let u = RunUpdate { last_error: Some(reason.into()), ..RunUpdate::default() };
    store.transition(&id, RunStatus::Accepted, status, at, reason, &u).await.unwrap();
    id
}

#[tokio::test]
async fn dead_letters_are_listed_filtered_requeued_and_purged() {
    let (_redis, store) = store().await;
    let rejected = dead(&store, RunStatus::Rejected, "/inputs/customerId: maxLength", 10).await;
    let gave_up = dead(&store, RunStatus::Dead, "poll: 25 transient errors (compute_unavailable)", 20).await;
    let other = dead(&store, RunStatus::Dead, "record unreadable", 30).await;
    assert_eq!(store.dlq_len().await.unwrap(), 3);

    let all = store.dlq_list(&DlqFilter::default()).await.unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), vec![rejected, gave_up, other]);
    let only_dead = store.dlq_list(&DlqFilter { status: Some(RunStatus::Dead), ..DlqFilter::default() }).await.unwrap();
    assert_eq!(only_dead.len(), 2);
    let by_reason =
        store.dlq_list(&DlqFilter { reason_contains: Some("COMPUTE".into()), ..DlqFilter::default() }).await.unwrap();
    assert_eq!(by_reason.iter().map(|r| r.id).collect::<Vec<_>>(), vec![gave_up]);
    let since = store.dlq_list(&DlqFilter { since_ms: Some(25), ..DlqFilter::default() }).await.unwrap();
    assert_eq!(since.len(), 1);
    let wrong_flavor =
        store.dlq_list(&DlqFilter { flavor: Some(Flavor::Workflow), ..DlqFilter::default() }).await.unwrap();
    assert!(wrong_flavor.is_empty());

    let back = store.dlq_requeue(&gave_up, 40).await.unwrap();
    assert_eq!(back.status, RunStatus::Accepted);
    assert!(!back.enqueued);
    assert_eq!(store.dlq_len().await.unwrap(), 2);
    assert!(store.dlq_requeue(&gave_up, 41).await.is_err(), "only dead-lettered runs can be requeued");
    let history = store.history(&gave_up).await.unwrap();
    assert_eq!(history.last().unwrap().cause, "requeued by an operator");

    let purged =
        store.dlq_purge(&DlqFilter { status: Some(RunStatus::Rejected), ..DlqFilter::default() }).await.unwrap();
    assert_eq!(purged, 1);
    assert!(store.get_run(&rejected).await.unwrap().is_none());
    assert_eq!(store.dlq_len().await.unwrap(), 1);
}

#[tokio::test]
async fn a_purge_leaves_alone_a_run_requeued_since_it_was_listed() {
    let (_redis, store) = store().await;
    let a = dead(&store, RunStatus::Dead, "gave up", 10).await;
    let b = dead(&store, RunStatus::Rejected, "bad input", 20).await;
    let listed: Vec<RunId> = store.dlq_list(&DlqFilter::default()).await.unwrap().iter().map(|r| r.id).collect();
    assert_eq!(listed.len(), 2);
    // Another operator requeues one before the purge is confirmed.
    store.dlq_requeue(&a, 30).await.unwrap();
    assert_eq!(store.dlq_purge_ids(&listed).await.unwrap(), 1);
    assert_eq!(store.get_run(&a).await.unwrap().unwrap().status, RunStatus::Accepted, "the requeued run lives");
    assert!(store.get_run(&b).await.unwrap().is_none());
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.get("rejected").copied().unwrap_or(0), 0);
}
