//! The operator CLI as operators run it: the `gcrun` binary against a real
//! Redis whose dead letters the pipeline itself produced (a contract the
//! input breaks, a Genesys that kept failing), never hand-written keys.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use gcrun_emulator::{EmulatorConfig, Faults};
use gcrun_harness::wait_until;
use gcrun_model::{RunId, RunStatus, WebhookStatus};
use gcrun_tests::{CLIENT_ID, CLIENT_SECRET, LOOKUP, Stack, gcrun_binary};
use serde_json::{Value, json};

fn gcrun(stack: &Stack, args: &[&str]) -> Output {
    Command::new(gcrun_binary())
        .args(args)
        .env("REDIS_URL", stack.redis.url())
        .env("GENESYSCLOUD_REGION", stack.emu.base_url())
        .env("GENESYSCLOUD_OAUTHCLIENT_ID", CLIENT_ID)
        .env("GENESYSCLOUD_OAUTHCLIENT_SECRET", CLIENT_SECRET)
        .env("GCRUN_LOG", "warn")
        .env_remove("GCRUN_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

#[tokio::test]
async fn dlq_list_show_page_filter_and_purge_with_confirmation() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let (rejected, died) = stack.dead_letters().await;

    let all = json_lines(&ok(&gcrun(&stack, &["dlq", "list", "--json"])));
    assert_eq!(all.len(), 5);
    let listed: Vec<String> = all.iter().map(|r| r["runId"].as_str().unwrap().to_string()).collect();
    // Oldest first: the rejected runs ended before the others were sent;
    // the two that died ran side by side, in either order.
    let rejected_ids: Vec<String> = rejected.iter().map(ToString::to_string).collect();
    assert_eq!(listed[..3], rejected_ids[..], "oldest first");
    let mut last_two = listed[3..].to_vec();
    last_two.sort();
    let mut died_ids: Vec<String> = died.iter().map(ToString::to_string).collect();
    died_ids.sort();
    assert_eq!(last_two, died_ids);
    let expected = listed.clone();
    let only_dead = json_lines(&ok(&gcrun(&stack, &["dlq", "list", "--json", "--status", "dead"])));
    assert_eq!(only_dead.len(), 2);
    assert!(only_dead.iter().all(|r| r["lastError"].as_str().unwrap().contains("503")), "{only_dead:?}");
    let batch_a = json_lines(&ok(&gcrun(&stack, &["dlq", "list", "--json", "--meta", "batch=a"])));
    assert_eq!(batch_a.len(), 2);
    let by_reason = json_lines(&ok(&gcrun(&stack, &["dlq", "list", "--json", "--reason", "/inputs/channel"])));
    assert_eq!(by_reason.len(), 3);

    // Pages: two at a time, each page's cursor leading to the next.
    let first = gcrun(&stack, &["dlq", "list", "--json", "--page-size", "2"]);
    assert_eq!(json_lines(&ok(&first)).len(), 2);
    let cursor = stderr(&first).lines().find_map(|l| l.strip_prefix("more: --after ").map(str::to_owned)).unwrap();
    let second = json_lines(&ok(&gcrun(&stack, &["dlq", "list", "--json", "--page-size", "2", "--after", &cursor])));
    assert_eq!(
        second.iter().map(|r| r["runId"].as_str().unwrap()).collect::<Vec<_>>(),
        expected[2..4].iter().map(String::as_str).collect::<Vec<_>>()
    );

    // One entry's detail: the reason, the request, every transition.
    let shown = ok(&gcrun(&stack, &["dlq", "show", &died[0].to_string()]));
    assert!(shown.contains("status     dead"), "{shown}");
    assert!(shown.contains("503"), "{shown}");
    assert!(shown.contains("\"customerId\":\"d0\""), "{shown}");
    assert!(shown.contains("-> dead"), "{shown}");
    // Every retried attempt's error is kept with Genesys's correlation id,
    // not only the last one.
    let detail: Value =
        serde_json::from_str(&ok(&gcrun(&stack, &["dlq", "show", &died[0].to_string(), "--json"]))).unwrap();
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "two submits, the first retried: {detail}");
    assert_eq!(attempts[0]["stage"], "submit");
    assert!(attempts[0]["error"].as_str().unwrap().contains("503"));
    assert!(!attempts[0]["correlationId"].as_str().unwrap().is_empty());
    assert!(shown.contains("failed attempts (retried):"), "{shown}");
    let missing = gcrun(&stack, &["dlq", "show", &RunId::new().to_string()]);
    assert_eq!(missing.status.code(), Some(3), "{}", stderr(&missing));

    // Purge asks first; with no terminal and no --yes it refuses, changing nothing.
    let refused = gcrun(&stack, &["dlq", "purge", "--status", "rejected"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--yes"));
    let dry = gcrun(&stack, &["dlq", "purge", "--status", "rejected", "--dry-run"]);
    assert_eq!(ok(&dry).lines().filter(|l| l.starts_with("would purge")).count(), 3);
    assert_eq!(stack.store.dlq_len().await.unwrap(), 5, "a dry run changes nothing");
    ok(&gcrun(&stack, &["dlq", "purge", "--status", "rejected", "--meta", "batch=a", "--yes"]));
    assert_eq!(stack.store.dlq_len().await.unwrap(), 3);
    for id in &rejected[..2] {
        assert!(stack.store.get_run(id).await.unwrap().is_none());
    }
    assert!(stack.store.get_run(&rejected[2]).await.unwrap().is_some(), "batch b was not matched");
}

#[tokio::test]
async fn runs_failed_by_a_failing_genesys_are_requeued_once_it_recovers_and_complete_with_their_webhook() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let (_, died) = stack.dead_letters().await;
    // A dry run lists exactly the dead runs and changes nothing.
    let dry = ok(&gcrun(&stack, &["dlq", "requeue", "--status", "dead", "--dry-run"]));
    assert_eq!(dry.lines().filter(|l| l.starts_with("would requeue")).count(), 2, "{dry}");
    assert_eq!(stack.count(RunStatus::Dead).await, 2);

    stack.emu.emulator.set_faults(Faults::default()).unwrap();
    let out = gcrun(
        &stack,
        &["dlq", "requeue", "--status", "dead", "--by", "alice", "--reason-text", "Genesys is back", "--json"],
    );
    assert_eq!(json_lines(&ok(&out)).len(), 2);
    let worker = stack.start_worker_from(stack.impatient()).await;
    for id in &died {
        let rec = wait_until("the requeued run to complete with its webhook", Duration::from_secs(30), || async {
            let r = stack.store.get_run_with_history(id).await.unwrap().unwrap();
            (r.webhook.status == Some(WebhookStatus::Delivered)).then_some(r)
        })
        .await;
        assert_eq!(rec.status, RunStatus::Completed);
        // Both lives and the requeue between them, in order.
        let path: Vec<RunStatus> = rec.transitions.iter().map(|t| t.to).collect();
        let dead_at = path.iter().position(|s| *s == RunStatus::Dead).unwrap();
        assert_eq!(path[dead_at + 1], RunStatus::Accepted, "{path:?}");
        assert_eq!(rec.transitions[dead_at + 1].cause, "requeued by alice: Genesys is back");
        assert_eq!(path.last(), Some(&RunStatus::Completed));
        let audit = stack.store.audit_for(id).await.unwrap();
        assert!(audit.iter().any(|e| e["cause"] == "requeued by alice: Genesys is back"), "the audit trail has it");
        let delivered = stack.sink.lock().unwrap().accepted.iter().any(|d| d.body["runId"] == id.to_string());
        assert!(delivered, "the receiver got the completed run's webhook");
    }
    worker.stop().await;
}

// Multi-threaded: `check` calls the in-process emulator while this
// thread waits on the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_list_tail_stats_audit_export_and_check() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let (rejected, died) = stack.dead_letters().await;

    let newest = json_lines(&ok(&gcrun(&stack, &["runs", "list", "--json"])));
    assert_eq!(newest.len(), 5);
    assert_eq!(newest[0]["runId"], died[1].to_string(), "newest first");
    let batch_c = json_lines(&ok(&gcrun(&stack, &["runs", "list", "--json", "--meta", "batch=c", "--oldest-first"])));
    assert_eq!(batch_c.iter().map(|r| r["runId"].clone()).collect::<Vec<_>>(), vec![json!(died[0]), json!(died[1])]);
    let window = json_lines(&ok(&gcrun(&stack, &["runs", "list", "--json", "--since", "10m", "--status", "rejected"])));
    assert_eq!(window.len(), 3);
    let future = json_lines(&ok(&gcrun(&stack, &["runs", "list", "--json", "--until", "2020-01-01T00:00:00Z"])));
    assert!(future.is_empty(), "no run was accepted before 2020");

    // Stats: queue depth, outcomes over the window, the limiter, retention.
    let stats: Value = serde_json::from_str(&ok(&gcrun(&stack, &["stats", "--json", "--window", "1h"]))).unwrap();
    assert_eq!(stats["deadLetters"], 5);
    assert_eq!(stats["window"]["runs"], 5);
    assert_eq!(stats["window"]["byStatus"]["rejected"], 3);
    assert_eq!(stats["window"]["successRate"], 0.0);
    assert_eq!(stats["queues"].as_array().unwrap().len(), 3);
    assert_eq!(stats["limiters"][0]["name"], CLIENT_ID);
    assert_eq!(stats["limiters"][0]["limits"]["maxConcurrent"], 100);
    assert_eq!(stats["retention"]["deadRunSecs"], 30 * 86_400);
    let human = ok(&gcrun(&stack, &["stats"]));
    assert!(human.contains("dead-letter set: 5 run(s)"), "{human}");

    // Audit export: every entry once, resumable after any id.
    let audit_len = stack.store.audit_len().await.unwrap() as usize;
    let export = gcrun(&stack, &["audit", "export", "--since", "1h"]);
    let entries = json_lines(&ok(&export));
    assert_eq!(entries.len(), audit_len);
    let third = entries[2]["id"].as_str().unwrap();
    let resumed = json_lines(&ok(&gcrun(&stack, &["audit", "export", "--after", third])));
    assert_eq!(resumed.len(), audit_len - 3);
    assert_eq!(resumed[0], entries[3]);
    let none = gcrun(&stack, &["audit", "export", "--until", "2020-01-01T00:00:00Z"]);
    assert!(ok(&none).is_empty());

    // Tail: what happens from now on, filtered. Started from the newest
    // id, so nothing that happens after the call is missed.
    let from = stack.store.audit_last_id().await.unwrap();
    let tail = Command::new(gcrun_binary())
        .args(["runs", "tail", "--json", "--to", "accepted", "--count", "1", "--for-secs", "20", "--from", &from])
        .env("REDIS_URL", stack.redis.url())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let doc = json!({"flavor": "execute", "actionId": LOOKUP, "inputs": {"customerId": "t", "channel": "chat"}});
    let new = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
    let tailed = tail.wait_with_output().unwrap();
    let lines = json_lines(&ok(&tailed));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["run"], new.to_string());
    assert_eq!(lines[0]["to"], "accepted");
    let first_three = json_lines(&ok(&gcrun(&stack, &["runs", "tail", "--json", "--from", "0", "--count", "3"])));
    assert_eq!(first_three[0]["run"], rejected[0].to_string(), "from the oldest kept");

    // Check: every violation against the live contract, nothing run.
    stack.emu.emulator.set_faults(Faults::default()).unwrap();
    let submissions = stack.emu.emulator.stats().submissions;
    let bad = gcrun(&stack, &["check", LOOKUP, "-i", "channel=fax", "--json"]);
    assert_eq!(bad.status.code(), Some(4), "{}", stderr(&bad));
    let verdict: Value = serde_json::from_slice(&bad.stdout).unwrap();
    let paths: Vec<&str> =
        verdict["violations"].as_array().unwrap().iter().map(|v| v["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"/inputs/channel") && paths.contains(&"/inputs/customerId"), "{verdict}");
    let good = ok(&gcrun(&stack, &["check", LOOKUP, "-i", "channel=chat", "-i", "customerId=42"]));
    assert!(good.starts_with("valid"), "{good}");
    assert_eq!(stack.emu.emulator.stats().submissions, submissions, "check runs nothing");
}

/// `gcrun enqueue --stdin` with more lines than one batch holds, several
/// batches in flight at once: every line is answered, in line order, with
/// its own result (a run whose inputs are that line's, or that line's own
/// error); blank lines are skipped; one bad line loses no other.
#[tokio::test]
async fn enqueue_stdin_answers_every_line_in_order_across_batches() {
    use std::io::Write;
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let (lines, not_json, invalid, blank) = (2_600usize, 5usize, 1_500usize, 10usize);
    let mut input = String::new();
    for line in 1..=lines {
        let doc = match line {
            l if l == not_json => "{not json".to_string(),
            l if l == invalid => json!({"flavor": "runs", "inputs": {"customerId": "x"}}).to_string(),
            l if l == blank => String::new(),
            l => json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": format!("c-{l}"), "channel": "chat"}})
                .to_string(),
        };
        input.push_str(&doc);
        input.push('\n');
    }
    let mut child = Command::new(gcrun_binary())
        .args(["enqueue", "--stdin", "--json"])
        .env("REDIS_URL", stack.redis.url())
        .env("GCRUN_LOG", "warn")
        .env_remove("GCRUN_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(out.status.code(), Some(2), "some lines were rejected: {}", stderr(&out));
    assert!(stderr(&out).contains(&format!("{} accepted, 2 rejected", lines - 3)), "{}", stderr(&out));

    let answers = json_lines(&String::from_utf8_lossy(&out.stdout));
    let numbers: Vec<u64> = answers.iter().map(|a| a["line"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = (1..=lines as u64).filter(|l| *l != blank as u64).collect();
    assert_eq!(numbers, expected, "one answer per non-blank line, in line order");
    for answer in &answers {
        let line = answer["line"].as_u64().unwrap() as usize;
        if line == not_json {
            assert!(answer["error"].as_str().unwrap().starts_with("not JSON"), "{answer}");
        } else if line == invalid {
            assert!(answer["error"].as_str().unwrap().contains("actionId"), "{answer}");
        } else {
            let id: RunId = answer["runId"].as_str().unwrap().parse().unwrap();
            let rec = stack.store.get_run(&id).await.unwrap().expect("the answered run exists");
            assert_eq!(rec.status, RunStatus::Accepted);
            assert_eq!(rec.request.inputs()["customerId"], json!(format!("c-{line}")), "the run of line {line}");
        }
    }
    let depth = stack.queues.depth(&stack.queues.names.submit).await.unwrap();
    assert_eq!(depth.ready as usize, lines - 3, "every accepted run has its submit job");
}
