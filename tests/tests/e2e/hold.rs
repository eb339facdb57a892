//! Operators stop the bleeding: `gcrun pause action|flavor|queue` while
//! Genesys is down for one integration; nothing is lost, other work goes
//! on, and `gcrun resume` brings every held run back.

use std::process::{Command, Output};
use std::time::Duration;

use gcrun_emulator::EmulatorConfig;
use gcrun_harness::wait_until;
use gcrun_model::RunStatus;
use gcrun_producer::operator::{Actor, Operator, Pause};
use gcrun_tests::{CALLBACK, LOOKUP, Stack, gcrun_binary, limiter};
use serde_json::{Value, json};

fn gcrun(stack: &Stack, args: &[&str]) -> Output {
    let out = Command::new(gcrun_binary())
        .args(args)
        .env("REDIS_URL", stack.redis.url())
        .env("GCRUN_LOG", "warn")
        .env_remove("GCRUN_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// Multi-threaded: the commands run while this thread waits on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_action_parks_its_runs_before_genesys_while_others_go_on_and_a_resume_sends_them_all() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(120)).await;
    let worker = stack.start_worker(limiter(60_000, 100, 100)).await;
    let out = gcrun(&stack, &["pause", "action", LOOKUP, "--by", "ops", "--reason-text", "CRM integration down"]);
    assert_eq!(stdout(&out).trim(), format!("paused target:{LOOKUP}"));

    let mut held = Vec::new();
    for i in 0..20 {
        let doc = json!({"flavor": "execute", "actionId": LOOKUP, "inputs": {"customerId": format!("h{i}"), "channel": "chat"}});
        held.push(stack.producer.enqueue_value(&doc).await.unwrap().run_id);
    }
    let mut free = Vec::new();
    for i in 0..5 {
        let doc = json!({"flavor": "execute", "actionId": CALLBACK, "inputs": {"phoneNumber": format!("555000{i}")}});
        free.push(stack.producer.enqueue_value(&doc).await.unwrap().run_id);
    }
    stack.wait_all_terminal(&free, Duration::from_secs(30)).await;
    wait_until("the held runs to be parked", Duration::from_secs(20), || async {
        (stack.store.parked_len().await.unwrap() == 20).then_some(())
    })
    .await;
    assert_eq!(stack.emu.emulator.stats().submissions, 5, "only the other action reached Genesys");
    let records = stack.records(&held).await;
    assert!(records.values().all(|r| r.status == RunStatus::Accepted), "not even their contract was read");

    let pauses: Value = serde_json::from_str(&stdout(&gcrun(&stack, &["pauses", "--json"]))).unwrap();
    assert_eq!(pauses["parkedRuns"], 20);
    assert_eq!(pauses["pauses"][0]["what"], format!("target:{LOOKUP}"));
    assert_eq!(pauses["pauses"][0]["by"], "ops");
    assert_eq!(pauses["pauses"][0]["reason"], "CRM integration down");
    let stats: Value = serde_json::from_str(&stdout(&gcrun(&stack, &["stats", "--json"]))).unwrap();
    assert_eq!(stats["pauses"].as_array().unwrap().len(), 1);
    assert_eq!(stats["parkedRuns"], 20);

    let out = gcrun(&stack, &["resume", "action", LOOKUP]);
    assert!(stdout(&out).contains("20 parked run(s) sent on"), "{}", stdout(&out));
    stack.wait_all_terminal(&held, Duration::from_secs(30)).await;
    worker.stop().await;
    let records = stack.records(&held).await;
    assert!(records.values().all(|r| r.status == RunStatus::Completed), "every held run completed");
    assert_eq!(stack.store.parked_len().await.unwrap(), 0);
    assert_eq!(stack.emu.emulator.stats().submissions, 25, "each run submitted once");
}

#[tokio::test]
async fn a_paused_queue_leases_nothing_until_it_is_resumed() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(120)).await;
    let operator = Operator::new(stack.store.clone(), stack.queues.clone());
    let poll = Pause::parse("queue", "poll").unwrap();
    operator.pause(&poll, &Actor { by: "ops".into(), reason: "Genesys maintenance".into() }, 1).await.unwrap();
    let worker = stack.start_worker(limiter(60_000, 100, 100)).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let doc =
            json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": format!("q{i}"), "channel": "chat"}});
        ids.push(stack.producer.enqueue_value(&doc).await.unwrap().run_id);
    }
    // Submitted, then their polls fall due and stay ready: nobody leases them.
    let name = stack.queues.names.poll.clone();
    wait_until("the due polls to wait, untaken", Duration::from_secs(20), || async {
        let d = stack.queues.depth(&name).await.unwrap();
        (d.ready == 5 && d.in_flight == 0).then_some(())
    })
    .await;
    let records = stack.records(&ids).await;
    assert!(records.values().all(|r| r.status == RunStatus::Submitted && r.poll_attempts == 0), "{records:?}");
    let pauses = operator.pauses().await.unwrap();
    assert_eq!(pauses[0].what, "queue:poll");
    assert_eq!(pauses[0].reason, "Genesys maintenance");

    let r = operator.resume(&poll).await.unwrap();
    assert!(r.was_paused);
    stack.wait_all_terminal(&ids, Duration::from_secs(30)).await;
    worker.stop().await;
    assert!(stack.records(&ids).await.values().all(|r| r.status == RunStatus::Completed));
    assert!(operator.pauses().await.unwrap().is_empty());
}
