use std::time::Duration;

use apalis_free::push_raw;
use gcrun_emulator::EmulatorConfig;
use gcrun_harness::wait_until;
use gcrun_model::RunId;
use gcrun_tests::{Stack, limiter};

mod apalis_free {
    use gcrun_queue::Queues;
    use gcrun_queue::engine::Queue;

    /// Pushes a submit job whose payload is whatever the caller says.
    pub async fn push_raw(queues: &Queues, id: &str, payload: &str) {
        assert!(queues.engine().push_raw(Queue::Submit, id, payload).await.unwrap());
    }
}

#[tokio::test]
async fn malformed_jobs_end_in_the_dead_set_with_a_reason_and_the_worker_lives_on() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let worker = stack.start_worker(limiter(60_000, 100, 100)).await;
    push_raw(&stack.queues, "bad-1", r#"{"run":"not-a-uuid"}"#).await;
    let missing = RunId::new();
    push_raw(&stack.queues, "bad-2", &format!(r#"{{"run":"{missing}"}}"#)).await; // a run that does not exist
    push_raw(&stack.queues, "bad-3", r#"{"foo":1}"#).await; // not a submit job at all
    push_raw(&stack.queues, "bad-4", "\u{1}garbage").await; // not even JSON
    let dead = wait_until("the four jobs in the dead set", Duration::from_secs(15), || async {
        let jobs = stack.queues.dead_jobs(&stack.queues.names.submit, 0, 10).await.unwrap();
        (jobs.len() == 4).then_some(jobs)
    })
    .await;
    let reasons: Vec<String> = dead.iter().map(|j| j.reason.clone().unwrap_or_default()).collect();
    assert!(reasons.iter().any(|r| r.contains("not a UUID")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("has no record")), "{reasons:?}");
    assert_eq!(reasons.iter().filter(|r| r.contains("does not decode")).count(), 2, "{reasons:?}");

    // The worker is still serving.
    let doc = serde_json::json!({"flavor": "execute", "actionId": gcrun_tests::LOOKUP, "inputs": {"customerId": "x", "channel": "chat"}});
    let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
    stack.wait_all_terminal(&[id], Duration::from_secs(15)).await;
    worker.stop().await;
}

#[tokio::test]
async fn a_record_whose_request_no_longer_parses_is_dead_lettered_with_the_reason() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let doc = serde_json::json!({"flavor": "execute", "actionId": gcrun_tests::LOOKUP, "inputs": {"customerId": "x", "channel": "chat"}});
    let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
    // Foreign data (or a bug) overwrites the stored request.
    let mut conn = stack.store.connection();
    let key = stack.store.keys().run(&id);
    let _: () =
        redis::cmd("HSET").arg(&key).arg("request").arg(r#"{"flavor":"nope"}"#).query_async(&mut conn).await.unwrap();
    assert!(stack.store.get_run(&id).await.is_err(), "the record is corrupt");

    let deps = stack.deps(limiter(60_000, 100, 100)).await;
    assert_eq!(deps.submit(id, None).await.unwrap(), gcrun_worker::Outcome::Done(vec![]));
    let (status, reason): (String, String) =
        redis::cmd("HMGET").arg(&key).arg("status").arg("last_error").query_async(&mut conn).await.unwrap();
    assert_eq!(status, "dead");
    assert!(
        reason.starts_with("record unreadable: request no longer parses") && reason.contains("/flavor"),
        "{reason}"
    );
    assert_eq!(stack.store.dlq_len().await.unwrap(), 1, "in the dead-letter set");
    assert!(
        stack.store.dlq_list(&Default::default()).await.unwrap().is_empty(),
        "the listing skips what it cannot read"
    );
    let unreadable = stack.store.dlq_unreadable().await.unwrap();
    assert_eq!(unreadable.len(), 1, "and names it apart");
    assert!(unreadable[0].1.starts_with("record unreadable"), "{unreadable:?}");
    assert!(stack.store.overdue(u64::MAX / 2, 0, 10).await.unwrap().is_empty(), "out of the open set");
    assert_eq!(stack.emu.emulator.stats().submissions, 0);
}
