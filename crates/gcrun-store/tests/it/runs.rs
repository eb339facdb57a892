use std::time::Duration;

use gcrun_harness::wait_until;
use gcrun_model::{RunId, RunStatus};
use gcrun_store::{Created, RunUpdate, Store, TransitionOutcome, WriteOutcome};
use serde_json::json;

use crate::{raw, request, store};

#[tokio::test]
async fn a_run_is_created_once_per_idempotency_key() {
    let (_redis, store) = store().await;
    let (a, b) = (RunId::new(), RunId::new());
    assert_eq!(store.create_run(a, &request(Some("k1")), 1_000, 9_000).await.unwrap(), Created::New(a));
    assert_eq!(store.create_run(b, &request(Some("k1")), 2_000, 9_000).await.unwrap(), Created::Existing(a));
    assert!(store.get_run(&b).await.unwrap().is_none(), "nothing written for the duplicate");
    let c = RunId::new();
    assert_eq!(store.create_run(c, &request(None), 3_000, 9_000).await.unwrap(), Created::New(c));

    let r = store.get_run_with_history(&a).await.unwrap().unwrap();
    assert_eq!((r.status, r.created_ms, r.deadline_ms), (RunStatus::Accepted, 1_000, 9_000));
    assert_eq!(r.request.inputs()["customerId"], "42");
    assert_eq!(r.transitions.len(), 1);
    assert_eq!(r.transitions[0].to, RunStatus::Accepted);
    let counts = store.counts().await.unwrap();
    assert_eq!((counts["accepted"], counts["total"]), (2, 2));
    assert_eq!(store.audit_len().await.unwrap(), 2);
}

#[tokio::test]
async fn transitions_compare_and_set_and_record_everything() {
    let (redis, store) = store().await;
    let id = RunId::new();
    store.create_run(id, &request(None), 1, 100_000).await.unwrap();
    let t = |from, to, at, cause: &'static str, u: RunUpdate| {
        let store = store.clone();
        async move { store.transition(&id, from, to, at, cause, &u).await.unwrap() }
    };
    assert_eq!(
        t(RunStatus::Accepted, RunStatus::Validated, 2, "valid", RunUpdate::default()).await,
        TransitionOutcome::Applied
    );
    let submitted = RunUpdate { remote_id: Some("r-1".into()), submitted_ms: Some(3), ..RunUpdate::default() };
    assert_eq!(
        t(RunStatus::Validated, RunStatus::Submitted, 3, "submitted", submitted).await,
        TransitionOutcome::Applied
    );
    // A re-delivered job that still thinks the run is `validated` is stale.
    assert_eq!(
        t(RunStatus::Validated, RunStatus::Submitted, 4, "again", RunUpdate::default()).await,
        TransitionOutcome::Stale(RunStatus::Submitted)
    );
    let done = RunUpdate { outputs: Some(json!({"ok": true})), ..RunUpdate::default() };
    assert_eq!(t(RunStatus::Submitted, RunStatus::Completed, 9, "completed", done).await, TransitionOutcome::Applied);

    let r = store.get_run_with_history(&id).await.unwrap().unwrap();
    assert_eq!(
        (r.status, r.remote_id.as_deref(), r.completed_ms, r.duration_ms()),
        (RunStatus::Completed, Some("r-1"), Some(9), Some(8))
    );
    assert_eq!(r.outputs, Some(json!({"ok": true})));
    let path: Vec<RunStatus> = r.transitions.iter().map(|t| t.to).collect();
    assert_eq!(path, vec![RunStatus::Accepted, RunStatus::Validated, RunStatus::Submitted, RunStatus::Completed]);
    let audit = store.audit_for(&id).await.unwrap();
    assert_eq!(audit.len(), 4, "one audit entry per transition, none for the stale one");
    assert_eq!(audit[3]["from"], "submitted");
    assert_eq!(audit[3]["to"], "completed");
    let counts = store.counts().await.unwrap();
    assert_eq!((counts["completed"], counts["accepted"], counts["submitted"]), (1, 0, 0));

    // Terminal records expire after the retention; live ones do not.
    let mut conn = raw(&redis).await;
    let ttl: i64 = redis::cmd("PTTL").arg(format!("{{gcrun}}:run:{id}")).query_async(&mut conn).await.unwrap();
    assert!(ttl > 6 * 86_400_000, "{ttl}");
}

#[tokio::test]
async fn illegal_transitions_never_reach_redis() {
    let (_redis, store) = store().await;
    let id = RunId::new();
    store.create_run(id, &request(None), 1, 100).await.unwrap();
    let err = store.transition(&id, RunStatus::Accepted, RunStatus::Completed, 2, "x", &RunUpdate::default()).await;
    assert!(matches!(err, Err(gcrun_store::StoreError::Illegal(_))));
    assert_eq!(store.get_run(&id).await.unwrap().unwrap().status, RunStatus::Accepted);
    let missing =
        store.transition(&RunId::new(), RunStatus::Accepted, RunStatus::Validated, 2, "x", &RunUpdate::default()).await;
    assert!(matches!(missing, Err(gcrun_store::StoreError::NotFound(_))));
}

#[tokio::test]
async fn updates_never_recreate_a_missing_run() {
    let (redis, store) = store().await;
    let id = RunId::new();
    let u = RunUpdate { poll_attempts: Some(3), ..RunUpdate::default() };
    assert!(!store.update(&id, &u).await.unwrap());
    let mut conn = raw(&redis).await;
    let exists: i64 = redis::cmd("EXISTS").arg(format!("{{gcrun}}:run:{id}")).query_async(&mut conn).await.unwrap();
    assert_eq!(exists, 0);
    store.create_run(id, &request(None), 1, 100).await.unwrap();
    assert!(store.update(&id, &u).await.unwrap());
    assert_eq!(store.get_run(&id).await.unwrap().unwrap().poll_attempts, 3);
}

#[tokio::test]
async fn corrupt_records_are_errors_not_panics() {
    let (redis, store) = store().await;
    let id = RunId::new();
    let mut conn = raw(&redis).await;
    let _: () = redis::cmd("HSET")
        .arg(format!("{{gcrun}}:run:{id}"))
        .arg("status")
        .arg("exploded")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(matches!(store.get_run(&id).await, Err(gcrun_store::StoreError::Corrupt { .. })));
}

#[tokio::test]
async fn definitions_are_cached_with_a_ttl() {
    let (_redis, store) = store().await;
    store.cache_definition("a", "{\"id\":\"a\"}", 1_000, 10_000).await.unwrap();
    assert_eq!(store.cached_definition("a", 10_500).await.unwrap().as_deref(), Some("{\"id\":\"a\"}"));
    assert_eq!(store.cached_definition("a", 11_000).await.unwrap(), None);
    assert_eq!(store.cached_definition("b", 10_500).await.unwrap(), None);
}

#[tokio::test]
async fn a_submit_claim_is_marked_before_the_call_and_a_lapsed_marked_claim_is_an_unknown_outcome() {
    use gcrun_store::Claim;
    let (_redis, store) = store().await;
    let id = RunId::new();
    store.create_run(id, &request(None), 1_000, 900_000).await.unwrap();
    let validated = RunUpdate::default();
    store.transition(&id, RunStatus::Accepted, RunStatus::Validated, 1_000, "valid", &validated).await.unwrap();

    // Claims are timed by Redis's clock: short periods, waits on that clock.
    let lapse = |store: &Store| {
        let store = store.clone();
        async move {
            let until: u64 = redis::cmd("HGET")
                .arg(gcrun_store::keys::Keys::default().run(&id))
                .arg("submit_claim_until")
                .query_async(&mut store.connection())
                .await
                .unwrap();
            wait_until("the claim to lapse", Duration::from_secs(5), || async {
                (store.redis_now_ms().await.unwrap() > until).then_some(())
            })
            .await;
        }
    };
    let ms = Duration::from_millis;
    // A claim for the wait for a permit; another copy finds it held.
    assert_eq!(store.claim_submit(&id, ms(200), "a").await.unwrap(), Claim::Claimed { token: "a".into() });
    let Claim::Held { left } = store.claim_submit(&id, ms(200), "b").await.unwrap() else { panic!("held") };
    assert!(left > Duration::ZERO && left <= ms(200), "{left:?}");
    // Only the holder marks the call, and only while its claim lives.
    assert!(!store.mark_submit_sent(&id, "b", ms(5_000)).await.unwrap());
    lapse(&store).await;
    assert!(!store.mark_submit_sent(&id, "a", ms(5_000)).await.unwrap(), "lapsed");
    assert_eq!(store.claim_submit(&id, ms(60_000), "a").await.unwrap(), Claim::Claimed { token: "a".into() });
    let before = store.redis_now_ms().await.unwrap();
    assert!(store.mark_submit_sent(&id, "a", ms(300)).await.unwrap());
    let after = store.redis_now_ms().await.unwrap();
    // The call's claim covers the call; once it lapses with no outcome, the
    // outcome is unknown and no copy may claim (and submit) again.
    assert!(matches!(store.claim_submit(&id, ms(100), "c").await.unwrap(), Claim::Held { .. }));
    lapse(&store).await;
    let Claim::SentWithoutAnswer { sent_ms } = store.claim_submit(&id, ms(100), "c").await.unwrap() else {
        panic!("unknown")
    };
    assert!((before..=after).contains(&sent_ms), "marked at Redis's time");
    // A claim release (a denied permit) is only the holder's, and it leaves
    // the mark alone ...
    let other = store.prepare_release_claim(&id, "c");
    assert_eq!(store.apply(&other).await.unwrap(), WriteOutcome::Stale(None), "not c's claim");
    let own = store.prepare_release_claim(&id, "a");
    assert_eq!(store.apply(&own).await.unwrap(), WriteOutcome::Applied);
    assert!(matches!(store.claim_submit(&id, ms(100), "c").await.unwrap(), Claim::SentWithoutAnswer { .. }));
    // ... only the answered call that did not run clears it.
    assert!(store.update(&id, &RunUpdate::default().call_not_run()).await.unwrap());
    assert_eq!(store.claim_submit(&id, ms(100), "c").await.unwrap(), Claim::Claimed { token: "c".into() });
}

#[tokio::test]
async fn a_step_counter_moves_only_while_the_run_is_in_the_status_decided_on() {
    use gcrun_store::Counter;
    let (_redis, store) = store().await;
    let id = RunId::new();
    store.create_run(id, &request(None), 1_000, 900_000).await.unwrap();
    store.transition(&id, RunStatus::Accepted, RunStatus::Validated, 1_000, "v", &RunUpdate::default()).await.unwrap();
    // A copy decided a retry on the validated run; another ended it first.
    store
        .transition(&id, RunStatus::Validated, RunStatus::Dead, 1_001, "unknown", &RunUpdate::default())
        .await
        .unwrap();
    let retry = RunUpdate::failure("try again").call_not_run();
    assert!(!store.advance(&id, Counter::Retries, 0, RunStatus::Validated, &retry).await.unwrap());
    let rec = store.get_run(&id).await.unwrap().unwrap();
    assert_eq!((rec.status, rec.retries, rec.last_error), (RunStatus::Dead, 0, None), "nothing written");
    assert!(store.advance(&id, Counter::Retries, 0, RunStatus::Dead, &RunUpdate::default()).await.unwrap());
}

#[tokio::test]
async fn open_entries_whose_record_is_gone_are_dropped_so_they_cannot_starve_the_sweeper() {
    let (redis, store) = store().await;
    let mut conn = raw(&redis).await;
    let real = RunId::new();
    store.create_run(real, &request(None), 100, 500).await.unwrap();
    // Ghosts: open-set entries older than the real run whose records are gone.
    for (score, ghost) in [(1, RunId::new().to_string()), (2, RunId::new().to_string()), (3, "not-a-run".into())] {
        let () = redis::cmd("ZADD").arg("{gcrun}:open").arg(score).arg(ghost).query_async(&mut conn).await.unwrap();
    }
    // Slices of two: the first holds only ghosts and drops them; the sweep
    // after it reaches the real run instead of seeing the same ghosts again.
    assert!(store.overdue(10_000, 0, 2).await.unwrap().is_empty());
    assert_eq!(store.overdue(10_000, 0, 2).await.unwrap(), vec![real]);
    let left: u64 = redis::cmd("ZCARD").arg("{gcrun}:open").query_async(&mut conn).await.unwrap();
    assert_eq!(left, 1, "only the real run is still open");
}

#[tokio::test]
async fn redis_over_tls_verifies_the_server_certificate() {
    use gcrun_store::{RedisTarget, StoreConfig};
    let redis = gcrun_harness::RedisServer::start_with(gcrun_harness::RedisOptions {
        tls: true,
        ..gcrun_harness::RedisOptions::default()
    });
    let url = redis.tls_url().unwrap();
    // Trusting the CA that signed it: a working store over rediss://.
    let trusted = RedisTarget::new(url.clone()).with_ca_file(&redis.ca_file()).unwrap();
    let store = gcrun_store::Store::new(gcrun_store::connect_to(&trusted).await.unwrap(), StoreConfig::default());
    store.ping().await.unwrap();
    let id = RunId::new();
    store.create_run(id, &request(None), 1_000, 9_000).await.unwrap();
    assert!(store.get_run(&id).await.unwrap().is_some());
    // With only the system's store, the private CA is not trusted: refused.
    let Err(err) = gcrun_store::connect_to(&RedisTarget::new(url)).await else {
        panic!("an untrusted certificate is refused")
    };
    let text = err.to_string().to_lowercase();
    assert!(text.contains("certificate") || text.contains("unknownissuer"), "{text}");
    // And a CA file that cannot be read is a clear error, not a panic.
    let missing = RedisTarget::new("rediss://127.0.0.1:1/").with_ca_file(std::path::Path::new("/nonexistent/ca.pem"));
    assert!(missing.unwrap_err().to_string().contains("/nonexistent/ca.pem"));
}

#[tokio::test]
async fn ended_runs_whose_records_expired_leave_the_counts_and_indexes() {
    use gcrun_store::{Store, StoreConfig};
    let redis = gcrun_harness::RedisServer::start();
    let short = StoreConfig {
        terminal_retention: std::time::Duration::from_millis(200),
        dead_retention: std::time::Duration::from_millis(200),
        ..StoreConfig::default()
    };
    let store = Store::open(&redis.url(), short).await.unwrap();
    let mut conn = raw(&redis).await;
    let (done, dead, live) = (RunId::new(), RunId::new(), RunId::new());
    for id in [done, dead, live] {
        store.create_run(id, &request(None), 1_000, 9_000).await.unwrap();
    }
    let now = 2_000;
    store.transition(&done, RunStatus::Accepted, RunStatus::Rejected, now, "bad", &RunUpdate::default()).await.unwrap();
    store.transition(&dead, RunStatus::Accepted, RunStatus::Dead, now, "gave up", &RunUpdate::default()).await.unwrap();
    // A requeue takes a dead-lettered run out of the expiring index again.
    store.dlq_requeue(&done, now + 1).await.unwrap();
    gcrun_harness::wait_until("the dead record to expire", std::time::Duration::from_secs(5), || async {
        store.get_run(&dead).await.unwrap().is_none().then_some(())
    })
    .await;
    // Before the grace has passed nothing is touched; after it, the
    // expired run leaves the counts and the dead-letter index.
    assert_eq!(store.reconcile_expired(now, 60_000, 10).await.unwrap(), 0);
    assert_eq!(store.reconcile_expired(now + 1_000_000, 60_000, 10).await.unwrap(), 1);
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.get("dead").copied().unwrap_or(0), 0);
    assert_eq!(counts.get("accepted").copied().unwrap_or(0), 2, "the live and the requeued run");
    let dlq: u64 = redis::cmd("ZCARD").arg("{gcrun}:dlq").query_async(&mut conn).await.unwrap();
    let expiring: u64 = redis::cmd("ZCARD").arg("{gcrun}:expiring").query_async(&mut conn).await.unwrap();
    assert_eq!((dlq, expiring), (0, 0));
    assert!(store.get_run(&live).await.unwrap().is_some());
}
