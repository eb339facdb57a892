use std::time::Duration;

use gcrun_model::{Flavor, RunStatus, WebhookStatus};
use gcrun_queue::Job;
use gcrun_store::WebhookAttempt;
use gcrun_worker::step::webhook::{Need, Observation, decide};
use gcrun_worker::step::{Note, Write};
use gcrun_worker::webhook::{Delivery, classify};

use gcrun_worker::egress::Egress;

use super::*;

fn ended() -> RunRecord {
    let mut rec = record(Flavor::Runs, RunStatus::Completed);
    rec.completed_ms = Some(NOW - 100);
    rec.webhook.status = Some(WebhookStatus::Pending);
    rec
}

fn run(rec: &RunRecord, attempt: u32, obs: Observation) -> Decision<Need> {
    decide(rec, attempt, obs, &policy(), NOW, &mut jitter())
}

fn attempt_written(a: &gcrun_worker::step::Act) -> (u32, &WebhookAttempt) {
    match &a.write {
        Write::Webhook { expected, attempt } => (*expected, attempt),
        other => panic!("expected a webhook write, got {other:?}"),
    }
}

#[test]
fn a_pending_webhook_is_delivered_with_its_stable_event_id() {
    let rec = ended();
    let Need::Deliver(out) = need(run(&rec, 0, Observation::Loaded));
    assert_eq!(out.url.as_str(), HOOK);
    assert_eq!(out.event_id, gcrun_worker::webhook::event_id(&rec));
    assert_eq!(out.body["runId"], rec.id.to_string());
}

#[test]
fn nothing_is_sent_for_a_run_going_again_or_a_settled_webhook() {
    let mut rec = ended();
    rec.status = RunStatus::Accepted; // requeued
    assert_eq!(act(run(&rec, 0, Observation::Loaded)), gcrun_worker::step::Act::nothing());
    let mut rec = ended();
    rec.webhook.status = Some(WebhookStatus::Delivered);
    assert_eq!(act(run(&rec, 0, Observation::Loaded)), gcrun_worker::step::Act::nothing());
}

#[test]
fn a_copy_whose_successor_may_be_lost_pushes_it_again() {
    let mut rec = ended();
    rec.webhook.attempts = 2;
    let a = act(run(&rec, 1, Observation::Loaded));
    assert!(matches!(a.jobs[..], [Job::Webhook { attempt: 2, .. }]), "{a:?}");
    assert_eq!(act(run(&rec, 0, Observation::Loaded)), gcrun_worker::step::Act::nothing());
}

#[test]
fn a_host_outside_the_allow_list_kills_the_webhook_without_a_request() {
    let rec = ended();
    let strict = WorkerConfig { webhook_allowed_hosts: Some(vec!["hooks.example.com".into()]), ..policy() };
    let a = act(decide(&rec, 0, Observation::Loaded, &strict, NOW, &mut jitter()));
    let (expected, WebhookAttempt::Dead { reason }) = attempt_written(&a) else { panic!("{a:?}") };
    assert_eq!(expected, 0);
    assert!(reason.contains("allow-list") && !reason.contains("?"), "{reason}");
}

#[test]
fn a_2xx_is_delivered() {
    let a = act(run(&ended(), 0, Observation::Delivered(Delivery::Delivered)));
    assert_eq!(attempt_written(&a), (0, &WebhookAttempt::Delivered { at_ms: NOW }));
    assert_eq!(a.notes, vec![Note::Webhook("delivered")]);
}

#[test]
fn a_retryable_answer_schedules_the_next_attempt_honouring_retry_after() {
    let rec = ended();
    let retry = Delivery::Retry { reason: "receiver answered HTTP 503".into(), after: Some(Duration::from_secs(30)) };
    let a = act(run(&rec, 0, Observation::Delivered(retry)));
    assert!(matches!(attempt_written(&a), (0, WebhookAttempt::Failed { .. })));
    let [Job::Webhook { attempt: 1, after, .. }] = a.jobs[..] else { panic!("{a:?}") };
    assert!(after >= Duration::from_secs(30) && after <= Duration::from_secs(33), "{after:?}");
}

#[test]
fn a_retryable_answer_on_the_last_attempt_kills_the_webhook() {
    let mut rec = ended();
    let last = policy().max_webhook_attempts - 1;
    rec.webhook.attempts = last;
    let retry = Delivery::Retry { reason: "timed out".into(), after: None };
    let a = act(run(&rec, last, Observation::Delivered(retry)));
    let (_, WebhookAttempt::Dead { reason }) = attempt_written(&a) else { panic!("{a:?}") };
    assert!(reason.ends_with("(after 12 attempts)"), "{reason}");
    assert!(a.jobs.is_empty());
}

#[test]
fn a_permanent_answer_kills_the_webhook() {
    let a = act(run(&ended(), 0, Observation::Delivered(Delivery::Dead("HTTP 410".into()))));
    assert!(matches!(attempt_written(&a), (0, WebhookAttempt::Dead { .. })));
    assert_eq!(a.notes, vec![Note::Webhook("dead")]);
}

#[test]
fn receiver_answers_are_classified_by_what_another_attempt_could_change() {
    let at = "http://h/x";
    assert_eq!(classify(at, 200, None), Delivery::Delivered);
    assert_eq!(classify(at, 204, None), Delivery::Delivered);
    for redirect in [301, 302, 307, 308] {
        assert!(matches!(classify(at, redirect, None), Delivery::Dead(ref r) if r.contains("redirect")), "{redirect}");
    }
    for permanent in [400, 401, 403, 404, 410, 422] {
        assert!(matches!(classify(at, permanent, None), Delivery::Dead(_)), "{permanent}");
    }
    for transient in [408, 429, 500, 502, 503, 504] {
        assert!(matches!(classify(at, transient, None), Delivery::Retry { after: None, .. }), "{transient}");
    }
    assert_eq!(
        classify(at, 429, Some("12")),
        Delivery::Retry {
            reason: "receiver at http://h/x answered HTTP 429".into(),
            after: Some(Duration::from_secs(12))
        }
    );
}

#[tokio::test]
async fn no_answer_at_all_is_retried_and_the_message_hides_the_query() {
    let port = gcrun_harness::free_port();
    let out = gcrun_worker::webhook::Outgoing {
        url: format!("http://127.0.0.1:{port}/hook?token=s3cret").parse().unwrap(),
        event_id: "e".into(),
        body: serde_json::json!({}),
    };
    let http = gcrun_worker::webhook::client(Duration::from_secs(2), Egress::PrivateAllowed).unwrap();
    let Delivery::Retry { reason, after: None } = gcrun_worker::webhook::deliver(&http, None, &out, NOW).await else {
        panic!("a refused connection is worth another attempt")
    };
    assert!(reason.contains("could not connect") && !reason.contains("s3cret"), "{reason}");
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_and_is_retried() {
    // Accepts the connection, then says nothing.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let out = gcrun_worker::webhook::Outgoing {
        url: format!("http://{addr}/hook").parse().unwrap(),
        event_id: "e".into(),
        body: serde_json::json!({}),
    };
    let http = gcrun_worker::webhook::client(Duration::from_millis(200), Egress::PrivateAllowed).unwrap();
    let started = std::time::Instant::now();
    let delivery = gcrun_worker::webhook::deliver(&http, None, &out, NOW).await;
    assert!(matches!(delivery, Delivery::Retry { after: None, .. }), "{delivery:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "the client's timeout bounds an attempt");
}

#[test]
fn only_public_addresses_may_receive_webhooks_by_default() {
    use gcrun_worker::egress::is_public;
    for refused in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "198.18.0.1",
        "192.0.2.1",
        "240.0.0.1",
        "::1",
        "::",
        "fd00:ec2::254",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::",
        "2001:db8::1",
        "64:ff9b:1::a00:1",    // local-use NAT64: the translator's own network
        "2001:0:4136:e378::1", // Teredo: tunnels to whatever IPv4 it embeds
        "2001:20::1",          // ORCHIDv2
        "100::1",              // discard-only
    ] {
        assert!(!is_public(refused.parse().unwrap()), "{refused} must be refused");
    }
    for allowed in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
        assert!(is_public(allowed.parse().unwrap()), "{allowed} is public");
    }
}

#[tokio::test]
async fn a_webhook_to_an_internal_address_is_refused_after_resolution_and_reads_as_a_closed_port() {
    // A receiver that would accept, listening on loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = accepted.clone();
    tokio::spawn(async move {
        while let Ok(_conn) = listener.accept().await {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let http = gcrun_worker::webhook::client(Duration::from_secs(2), Egress::PublicOnly).unwrap();
    let closed = gcrun_harness::free_port();
    let mut reasons = Vec::new();
    // A name that resolves to loopback, a metadata address literal, and a
    // closed port: all read the same to the submitter.
    for url in [
        format!("http://localhost:{port}/hook"),
        "http://169.254.169.254/latest/meta-data".to_string(),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
    ] {
        let out = gcrun_worker::webhook::Outgoing {
            url: url.parse().unwrap(),
            event_id: "e".into(),
            body: serde_json::json!({}),
        };
        let Delivery::Retry { reason, .. } = gcrun_worker::webhook::deliver(&http, None, &out, NOW).await else {
            panic!("{url}: refused, as a connection failure")
        };
        reasons.push(reason.rsplit(": ").next().unwrap().to_string());
    }
    let allowed = gcrun_worker::webhook::client(Duration::from_secs(2), Egress::PrivateAllowed).unwrap();
    let out = gcrun_worker::webhook::Outgoing {
        url: format!("http://127.0.0.1:{closed}/hook").parse().unwrap(),
        event_id: "e".into(),
        body: serde_json::json!({}),
    };
    let Delivery::Retry { reason, .. } = gcrun_worker::webhook::deliver(&allowed, None, &out, NOW).await else {
        panic!()
    };
    reasons.push(reason.rsplit(": ").next().unwrap().to_string());
    assert!(reasons.iter().all(|r| r == "could not connect"), "{reasons:?}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0, "no connection reached the internal receiver");
}
