use std::collections::{HashMap, HashSet};
use std::time::Duration;

use gcrun_emulator::{EmulatorConfig, Faults, Limits, Timings};
use gcrun_model::{RunId, RunStatus, WebhookStatus};
use gcrun_tests::{CALLBACK, LOOKUP, ORDER_FLOW, Stack, limiter};
use gcrun_worker::webhook;
use serde_json::{Value, json};

/// 1,000 runs over the three flavors, with invalid inputs, failures,
/// transient run errors, injected 429s and 5xx, and a webhook receiver
/// that refuses its first requests.
fn batch(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let note = match i % 20 {
                0 => "emulator:fail",
                1 | 2 => "emulator:transient=2",
                _ => "",
            };
            let invalid = i % 25 == 3;
            match i % 3 {
                0 => {
                    let inputs = if invalid { json!({"customerId": 42}) } else { json!({"customerId": format!("c{i}"), "channel": "chat", "note": note}) };
                    json!({"flavor": "runs", "actionId": LOOKUP, "inputs": inputs})
                }
                1 => {
                    let inputs = if invalid { json!({"phoneNumber": "nope"}) } else { json!({"phoneNumber": format!("+1 {i}"), "note": note}) };
                    json!({"flavor": "execute", "actionId": CALLBACK, "inputs": inputs})
                }
                _ => json!({"flavor": "workflow", "flowId": ORDER_FLOW, "inputs": {"Flow.OrderId": format!("o{i}"), "Flow.Note": note}}),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_runs_all_end_and_are_accounted_for() {
    let emulator = EmulatorConfig {
        timings: Timings {
            queued_for: Duration::from_millis(100),
            running_for: Duration::from_millis(300),
            execute_for: Duration::from_millis(10),
        },
        limits: Limits { executions_per_window: None, max_concurrent: Some(100), ..Limits::default() },
        faults: Faults { rate_429: 0.02, rate_5xx: 0.02, rate_run_error: 0.05, ..Faults::default() },
        seed: 11,
        ..EmulatorConfig::default()
    };
    let stack = Stack::start(emulator, Duration::from_secs(120)).await;
    stack.sink.lock().unwrap().refuse_first = 25;
    let w1 = stack.start_worker(limiter(60_000, 100, 100)).await;
    let w2 = stack.start_worker(limiter(60_000, 100, 100)).await;

    let docs = batch(1_000);
    let results = stack.producer.enqueue_batch(&docs).await.unwrap();
    let ids: Vec<RunId> = results.iter().map(|r| r.as_ref().unwrap().run_id).collect();
    assert_eq!(ids.len(), 1_000, "everything passes the door; contract violations are found by the worker");
    stack.wait_all_terminal(&ids, Duration::from_secs(400)).await;
    w1.stop().await;
    w2.stop().await;

    let records = stack.records(&ids).await;
    assert_eq!(records.len(), 1_000);
    let mut by_status: HashMap<RunStatus, usize> = HashMap::new();
    for r in records.values() {
        *by_status.entry(r.status).or_default() += 1;
    }
    let terminal = [RunStatus::Completed, RunStatus::Failed, RunStatus::TimedOut, RunStatus::Rejected, RunStatus::Dead];
    let accounted: usize = terminal.iter().map(|s| by_status.get(s).copied().unwrap_or(0)).sum();
    assert_eq!(accounted, 1_000, "completed + failed + timed_out + rejected + dead = accepted: {by_status:?}");
    let invalid = (0..1_000).filter(|i| i % 25 == 3 && i % 3 != 2).count();
    assert_eq!(by_status.get(&RunStatus::Rejected).copied().unwrap_or(0), invalid, "{by_status:?}");
    assert!(by_status[&RunStatus::Failed] > 0 && by_status[&RunStatus::Completed] > 800, "{by_status:?}");

    // One audit entry per transition: the stream holds exactly the sum of
    // every run's history, and one run's entries match its history.
    let transitions: usize = records.values().map(|r| r.transitions.len()).sum();
    assert_eq!(stack.store.audit_len().await.unwrap() as usize, transitions);
    let sample = &records[&ids[0]];
    let audit = stack.store.audit_for(&ids[0]).await.unwrap();
    let audit_path: Vec<&str> = audit.iter().map(|e| e["to"].as_str()).collect();
    let history_path: Vec<&str> = sample.transitions.iter().map(|t| t.to.as_str()).collect();
    assert_eq!(audit_path, history_path);
    for r in records.values() {
        for pair in r.transitions.windows(2) {
            assert!(pair[0].to.can_become(pair[1].to), "illegal path for {}: {:?}", r.id, r.transitions);
        }
    }

    // Every run's webhook event id reached the sink; duplicates only
    // repeat an id. Signatures all verified.
    let log = stack.sink.lock().unwrap();
    assert_eq!(log.bad_signatures, 0);
    assert_eq!(log.refused, 25);
    let received: HashSet<&str> = log.accepted.iter().map(|d| d.id.as_str()).collect();
    for r in records.values() {
        assert_eq!(r.webhook.status, Some(WebhookStatus::Delivered), "{}", r.id);
        assert!(received.contains(webhook::event_id(r).as_str()), "webhook of {} never arrived", r.id);
    }
    assert_eq!(received.len(), 1_000, "no event id outside the batch");
    let one = log.accepted.iter().find(|d| d.body["status"] == "completed").unwrap();
    for field in
        ["event", "runId", "status", "durationSeconds", "success", "audit", "definitionId", "flavor", "outputs"]
    {
        assert!(one.body.get(field).is_some(), "webhook body has {field}: {}", one.body);
    }
    assert_eq!(one.body["event"], "data_action_run_completed");
    assert!(one.body["audit"]["transitions"].as_array().unwrap().len() >= 3);
}

#[tokio::test]
async fn an_idle_worker_wakes_when_another_process_pushes() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    // A worker that, left alone, would look for new jobs every 30 s.
    let settings = gcrun_worker::RunSettings { poll_interval: Duration::from_secs(30), ..Default::default() };
    let worker = stack.start_worker_with(limiter(60_000, 100, 100), settings).await;
    // Let it go idle (its first fetches find nothing).
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The producer is another Queues (another process, as far as the
    // worker knows): only the scripts' announcement can wake it.
    let doc = json!({"flavor": "execute", "actionId": LOOKUP, "inputs": {"customerId": "wake", "channel": "chat"}});
    let pushed = std::time::Instant::now();
    let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
    stack.wait_all_terminal(&[id], Duration::from_secs(10)).await;
    let took = pushed.elapsed();
    worker.stop().await;
    assert!(took < Duration::from_secs(5), "picked up by the push's announcement, not the 30 s look: {took:?}");
}

/// A run's first webhook attempt goes out from the job that stored its
/// end: no webhook job is made for a run whose first attempt is taken,
/// only for one whose first attempt is refused (its retries). With
/// `webhook_inline` off, every run's webhook has a job of its own again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_webhook_attempt_is_made_by_the_job_that_ended_the_run() {
    for inline in [true, false] {
        let emulator = EmulatorConfig {
            timings: Timings {
                queued_for: Duration::from_millis(50),
                running_for: Duration::from_millis(100),
                execute_for: Duration::from_millis(5),
            },
            limits: Limits { executions_per_window: None, max_concurrent: None, ..Limits::default() },
            ..EmulatorConfig::default()
        };
        let stack = Stack::start(emulator, Duration::from_secs(60)).await;
        let refused = 4;
        stack.sink.lock().unwrap().refuse_first = refused;
        // Three slots for twenty runs: waits, wake-ups and safety-net
        // submit jobs that find their run ended (and its webhook owed).
        let mut settings = stack.worker_settings(
            limiter(60_000, 100, 3),
            gcrun_worker::RunSettings { poll_interval: Duration::from_millis(20), ..Default::default() },
        );
        settings.policy.webhook_inline = inline;
        let worker = gcrun_worker::Worker::build(settings).await.unwrap();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(worker.run(None, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));

        // Both kinds of end: a polled run's (the poll job) and a synchronous
        // one's (the submit job).
        let docs: Vec<Value> = (0..20)
            .map(|i| match i % 2 {
                0 => json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": format!("c{i}"), "channel": "chat"}}),
                _ => json!({"flavor": "execute", "actionId": CALLBACK, "inputs": {"phoneNumber": format!("+1 {i}")}}),
            })
            .collect();
        let ids: Vec<RunId> =
            stack.producer.enqueue_batch(&docs).await.unwrap().into_iter().map(|r| r.unwrap().run_id).collect();
        gcrun_harness::wait_until("every webhook delivered", Duration::from_secs(60), || async {
            let records = stack.records(&ids).await;
            (records.len() == ids.len() && records.values().all(|r| r.webhook.status == Some(WebhookStatus::Delivered)))
                .then_some(())
        })
        .await;
        let _ = stop.send(true);
        let _ = task.await;

        let records = stack.records(&ids).await;
        assert!(records.values().all(|r| r.status == RunStatus::Completed), "inline {inline}");
        let attempts: u32 = records.values().map(|r| r.webhook.attempts).sum();
        assert_eq!(attempts as u64, ids.len() as u64 + refused, "each refusal cost one more attempt (inline {inline})");
        let webhook_jobs = stack.queues.depth(&stack.queues.names.webhook).await.unwrap();
        let expected = if inline { refused } else { ids.len() as u64 + refused };
        assert_eq!(
            webhook_jobs.done, expected,
            "webhook jobs made (inline {inline}): only the retries when the first attempt is inline"
        );
        assert_eq!(stack.sink.lock().unwrap().duplicates(), 0);
    }
}

/// A stale step job (here a submit job, a safety net left from a wait)
/// that finds its run ended with the webhook still owed must not make a
/// webhook attempt of its own: the attempt is the ending job's, maybe in
/// flight right now. It only makes sure a webhook job exists, due once
/// that attempt would have been recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_step_job_that_finds_its_run_ended_makes_no_webhook_attempt() {
    use gcrun_queue::engine::Queue;
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let deps = stack.deps(limiter(60_000, 100, 10)).await;
    let doc = json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": "c1", "channel": "chat"}});
    let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
    // Its end stored, the webhook owed: what the ending job leaves before
    // its inline attempt is recorded.
    stack.end_owing_webhook(&id).await;
    let store = &stack.store;

    // The run's submit job, as a worker leases it.
    let engine = stack.queues.engine();
    let fetched = engine.fetch(Queue::Submit, 1, Duration::from_secs(30)).await.unwrap();
    let handle = gcrun_queue::JobHandle::new(fetched.jobs.into_iter().next().expect("the submit job").lease);
    let outcome = deps.submit(id, Some(&handle)).await.unwrap();

    assert_eq!(stack.sink.lock().unwrap().accepted.len(), 0, "no delivery from the stale copy");
    let rec = store.get_run(&id).await.unwrap().unwrap();
    assert_eq!((rec.webhook.status, rec.webhook.attempts), (Some(WebhookStatus::Pending), 0));
    let gcrun_worker::interpret::Outcome::Done(jobs) = outcome else { panic!("{outcome:?}") };
    assert!(
        matches!(jobs[..], [gcrun_queue::Job::Webhook { attempt: 0, after, .. }] if after > Duration::from_secs(10)),
        "a webhook job, due after the longest inline attempt: {jobs:?}"
    );
    let webhook = stack.queues.depth(&stack.queues.names.webhook).await.unwrap();
    assert_eq!((webhook.ready, webhook.scheduled), (0, 1), "scheduled, not due now");
}
