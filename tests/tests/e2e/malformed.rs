use std::time::Duration;

use apalis_free::push_raw;
use gcrun_emulator::EmulatorConfig;
use gcrun_harness::wait_until;
use gcrun_model::RunId;
use gcrun_tests::{Stack, limiter};

mod apalis_free {
    use gcrun_queue::{Queues, SubmitJob};

    /// Pushes a submit job whose run id is whatever the caller says.
    pub async fn push_raw(queues: &Queues, run: &str) {
        let mut storage = queues.submit.clone();
        apalis::prelude::TaskSink::push(&mut storage, SubmitJob { run: run.to_string() }).await.unwrap();
    }
}

#[tokio::test]
async fn malformed_jobs_end_in_the_dead_set_with_a_reason_and_the_worker_lives_on() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let worker = stack.start_worker(limiter(60_000, 100, 100)).await;
    push_raw(&stack.queues, "not-a-uuid").await;
    push_raw(&stack.queues, &RunId::new().to_string()).await; // a run that does not exist
    let dead = wait_until("both jobs in the dead set", Duration::from_secs(15), || async {
        let jobs = stack.queues.dead_jobs(&stack.queues.names.submit, 10).await.unwrap();
        (jobs.len() == 2).then_some(jobs)
    })
    .await;
    let reasons: Vec<String> = dead.iter().map(|j| j.result.clone().unwrap_or_default()).collect();
    assert!(reasons.iter().any(|r| r.contains("not a UUID")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("has no record")), "{reasons:?}");

    // The worker is still serving.
    let doc = serde_json::json!({"flavor": "execute", "actionId": gcrun_tests::LOOKUP, "inputs": {"customerId": "x", "channel": "chat"}});
    let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
    stack.wait_all_terminal(&[id], Duration::from_secs(15)).await;
    worker.stop().await;
}
