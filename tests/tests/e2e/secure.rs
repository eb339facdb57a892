//! Secure data actions (Genesys marks them `secure`; see the reference):
//! through a worker process logging at trace level, a secure action's
//! inputs and outputs appear in no log, are erased from the record when the
//! run ends, stay out of its history, the audit stream and its webhook,
//! unless the run asked for them (`includeSecureData`). A rejected secure
//! run's violations quote none of its inputs, and it cannot be requeued
//! (its inputs are gone); operators are told why.

use std::time::Duration;

use gcrun_emulator::EmulatorConfig;
use gcrun_emulator::fixtures::demo::SCORE;
use gcrun_harness::wait_until;
use gcrun_model::{RunId, RunStatus};
use gcrun_producer::operator::{Operator, OperatorError, Selection};
use gcrun_store::StoreError;
use gcrun_tests::{Logged, Stack};
use serde_json::{Value, json};

const NOTE: &str = "s3cure-n0te-7f2a";
const BAD_NOTE: &str = "s3cure-bad-9q4e";

async fn raw_field(stack: &Stack, id: &RunId, field: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(stack.store.keys().run(id))
        .arg(field)
        .query_async(&mut stack.store.connection())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_actions_data_is_never_logged_kept_past_the_end_or_sent_unasked() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = Logged::spawn(stack.worker_process(&[]), dir.path(), "worker", "trace");
    let docs = [
        json!({"flavor": "runs", "actionId": SCORE, "inputs": {"amount": 1234.5, "note": NOTE}}),
        json!({"flavor": "execute", "actionId": SCORE, "inputs": {"amount": 7, "note": NOTE}, "includeSecureData": true}),
        // Breaks the contract (amount < 0): rejected by the worker.
        json!({"flavor": "runs", "actionId": SCORE, "inputs": {"amount": -1, "note": BAD_NOTE}}),
    ];
    let ids: Vec<RunId> =
        stack.producer.enqueue_batch(&docs).await.unwrap().into_iter().map(|r| r.unwrap().run_id).collect();
    stack.wait_all_terminal(&ids, Duration::from_secs(60)).await;
    wait_until("every webhook", Duration::from_secs(30), || async {
        (stack.sink.lock().unwrap().unique_events() == ids.len()).then_some(())
    })
    .await;
    let (_, log) = worker.stop();
    assert!(log.contains("TRACE"), "trace logging was on");
    assert!(!log.contains(NOTE) && !log.contains(BAD_NOTE), "a secure input in the worker's log");
    assert!(!log.contains("\"band\""), "a secure output in the worker's log");

    let [withheld, asked, rejected] = [ids[0], ids[1], ids[2]];
    let records = stack.records(&ids).await;
    assert_eq!(records[&withheld].status, RunStatus::Completed);
    assert_eq!(records[&rejected].status, RunStatus::Rejected);
    assert!(records.values().all(|r| r.secure), "every run knows its action is secure");

    // Erased at the end: the stored request has no inputs, no outputs.
    for id in [withheld, rejected] {
        let request: Value = serde_json::from_str(&raw_field(&stack, &id, "request").await.unwrap()).unwrap();
        assert_eq!(request["inputs"], json!({}), "{id}");
        assert_eq!(raw_field(&stack, &id, "outputs").await.unwrap_or_default(), "", "{id}");
    }
    let error = records[&rejected].error.clone().unwrap();
    assert_eq!(error.violations[0].path, "/inputs/amount", "paths and codes stay");
    // Kept when asked.
    assert_eq!(records[&asked].request.inputs()["note"], NOTE);
    assert_eq!(records[&asked].outputs.as_ref().unwrap()["band"], "hot");

    // Not in the history, the audit stream or the webhooks unless asked.
    let mut shown = String::new();
    for id in [withheld, rejected] {
        shown += &format!("{:?}", records[&id]);
        shown += &format!("{:?}", stack.store.audit_for(&id).await.unwrap());
    }
    assert!(!shown.contains(NOTE) && !shown.contains(BAD_NOTE) && !shown.contains("\"band\""), "{shown}");
    let hooks: Vec<Value> = stack.sink.lock().unwrap().accepted.iter().map(|d| d.body.clone()).collect();
    let hook = |id: RunId| hooks.iter().find(|b| b["runId"] == id.to_string()).unwrap().clone();
    let plain = hook(withheld);
    assert_eq!((plain["secure"].clone(), plain["dataWithheld"].clone()), (json!(true), json!(true)));
    assert!(plain.get("outputs").is_none() && plain.get("error").is_none(), "{plain}");
    assert_eq!(hook(asked)["outputs"]["band"], "hot");
    assert!(!hook(rejected).to_string().contains(BAD_NOTE));

    // Its inputs are gone, so it cannot be requeued; an operator is told why.
    let operator = Operator::new(stack.store.clone(), stack.queues.clone());
    let err = operator.requeue_runs(&Selection::Runs(vec![rejected]), gcrun_worker::now_ms()).await.unwrap_err();
    assert!(
        matches!(&err, OperatorError::Store(StoreError::Refused(why)) if why.contains("secure") && why.contains("enqueue it again")),
        "{err}"
    );
    let filter = Selection::Matching(gcrun_store::DlqFilter::default());
    assert!(operator.requeue_runs(&filter, gcrun_worker::now_ms()).await.unwrap().is_empty(), "a filter skips it");
}
