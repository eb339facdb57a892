//! Failure paths found in review: duplicate submit copies, requeue of a
//! run that was already submitted, a successor job lost between the
//! counter and the push, hostile webhook receivers.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use gcrun_emulator::{EmulatorConfig, Timings};
use gcrun_harness::wait_until;
use gcrun_model::{RunStatus, WebhookStatus};
use gcrun_queue::Job;
use gcrun_store::RunUpdate;
use gcrun_tests::{LOOKUP, Stack, limiter};
use gcrun_worker::{Outcome, now_ms};
use serde_json::json;

fn slow() -> EmulatorConfig {
    EmulatorConfig {
        timings: Timings {
            queued_for: Duration::from_millis(100),
            running_for: Duration::from_secs(30),
            execute_for: Duration::from_millis(600),
        },
        ..EmulatorConfig::default()
    }
}

#[tokio::test]
async fn two_copies_of_one_submit_job_call_genesys_once() {
    let stack = Stack::start(slow(), Duration::from_secs(60)).await;
    let deps = stack.deps(limiter(60_000, 100, 100)).await;
    for flavor in ["execute", "runs"] {
        let doc = json!({"flavor": flavor, "actionId": LOOKUP, "inputs": {"customerId": flavor, "channel": "chat"}});
        // Racing from `accepted`: validation is compare-and-set; one goes on.
        let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
        let (a, b) = tokio::join!(deps.submit(id, None), deps.submit(id, None));
        assert!(a.is_ok() && b.is_ok());
        // Racing from `validated` (both copies past validation): the claim
        // lets one call Genesys; the other comes back after it.
        let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
        let now = now_ms();
        stack
            .store
            .transition(&id, RunStatus::Accepted, RunStatus::Validated, now, "valid", &RunUpdate::default())
            .await
            .unwrap();
        let (a, b) = tokio::join!(deps.submit(id, None), deps.submit(id, None));
        let (a, b) = (a.unwrap(), b.unwrap());
        let deferred =
            [&a, &b].iter().filter(|s| matches!(s, Outcome::Done(f) if matches!(f[..], [Job::Submit { .. }]))).count();
        assert_eq!(deferred, 1, "{flavor}: {a:?} / {b:?}");
    }
    assert_eq!(stack.emu.emulator.stats().submissions, 4, "one remote call per run");
}

#[tokio::test]
async fn a_submit_that_crashed_mid_call_is_dead_lettered_as_unknown_never_sent_again() {
    // A worker marked the call as sent, then died (or lost Redis) before
    // the answer was written; its claim lapsed. Every later copy of the
    // submit job must treat the outcome as unknown, for every flavor.
    let stack = Stack::start(slow(), Duration::from_secs(60)).await;
    let deps = stack.deps(limiter(60_000, 100, 100)).await;
    for flavor in ["runs", "execute"] {
        let doc = json!({"flavor": flavor, "actionId": LOOKUP, "inputs": {"customerId": flavor, "channel": "chat"}});
        let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
        let now = now_ms();
        let valid = RunUpdate::default();
        stack.store.transition(&id, RunStatus::Accepted, RunStatus::Validated, now, "valid", &valid).await.unwrap();
        let gcrun_store::Claim::Claimed { token } =
            stack.store.claim_submit(&id, Duration::from_secs(60), "dead-worker").await.unwrap()
        else {
            panic!("claim")
        };
        // The call is marked with a 1 ms claim over it: it lapses at once,
        // by Redis's clock, as a dead worker's would.
        assert!(stack.store.mark_submit_sent(&id, &token, Duration::from_millis(1)).await.unwrap());
        let until: u64 = redis::cmd("HGET")
            .arg(stack.store.keys().run(&id))
            .arg("submit_claim_until")
            .query_async(&mut stack.store.connection())
            .await
            .unwrap();
        wait_until("the marked claim to lapse", Duration::from_secs(5), || async {
            (stack.store.redis_now_ms().await.unwrap() > until).then_some(())
        })
        .await;

        let (a, b) = tokio::join!(deps.submit(id, None), deps.submit(id, None));
        assert!(a.is_ok() && b.is_ok());
        let rec = stack.store.get_run(&id).await.unwrap().unwrap();
        assert_eq!(rec.status, RunStatus::Dead, "{flavor}");
        assert!(rec.last_error.unwrap().starts_with("sent; answer lost: check Genesys"), "{flavor}");
    }
    assert_eq!(stack.emu.emulator.stats().submissions, 0, "never sent again");
}

#[tokio::test]
async fn a_live_workers_long_call_keeps_its_claim_so_no_copy_calls_again_or_calls_it_unknown() {
    // Each Genesys call takes 3 s; the claim over a call is 600 ms and is
    // renewed while the call runs. A second copy that comes long after the
    // claim would have lapsed unrenewed must still find it held.
    let emulator = EmulatorConfig {
        timings: Timings {
            queued_for: Duration::ZERO,
            running_for: Duration::ZERO,
            execute_for: Duration::from_secs(3),
        },
        ..EmulatorConfig::default()
    };
    let stack = Stack::start(emulator, Duration::from_secs(60)).await;
    let mut settings = stack.worker_settings(limiter(60_000, 100, 100), gcrun_worker::RunSettings::default());
    settings.policy.submit_call = Duration::from_millis(600);
    let deps = gcrun_worker::Worker::build(settings).await.unwrap().deps().clone();
    let doc = json!({"flavor": "execute", "actionId": LOOKUP, "inputs": {"customerId": "long", "channel": "chat"}});
    let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
    let first = tokio::spawn({
        let deps = deps.clone();
        async move { deps.submit(id, None).await }
    });
    gcrun_harness::wait_until("the call to be in flight", Duration::from_secs(10), || async {
        (stack.emu.emulator.stats().submissions == 1).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1_800) {
        // Three claim periods: without renewals the claim would have lapsed.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = deps.submit(id, None).await.unwrap();
    assert!(matches!(&second, Outcome::Done(jobs) if matches!(jobs[..], [Job::Submit { .. }])), "{second:?}");
    assert_eq!(stack.store.get_run(&id).await.unwrap().unwrap().status, RunStatus::Validated, "not dead-lettered");
    first.await.unwrap().unwrap();
    assert_eq!(stack.store.get_run(&id).await.unwrap().unwrap().status, RunStatus::Completed);
    assert_eq!(stack.emu.emulator.stats().submissions, 1);
}

#[tokio::test]
async fn a_requeued_run_that_was_submitted_resumes_polling_with_a_new_deadline() {
    let stack = Stack::start(slow(), Duration::from_secs(60)).await;
    let deps = stack.deps(limiter(60_000, 100, 100)).await;
    let doc = json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": "rq", "channel": "chat"}});
    let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
    deps.submit(id, None).await.unwrap();
    let before = stack.store.get_run(&id).await.unwrap().unwrap();
    let remote = before.remote_id.clone().unwrap();
    // An operator gave up on it, then requeues it.
    let update = RunUpdate { retries: Some(19), last_error: Some("gave up".into()), ..RunUpdate::default() };
    stack
        .store
        .transition(&id, before.status, RunStatus::Dead, before.updated_ms + 1, "gave up", &update)
        .await
        .unwrap();
    let now = now_ms();
    let requeued = stack.store.dlq_requeue(&id, now).await.unwrap();
    assert_eq!((requeued.status, requeued.retries), (RunStatus::Accepted, 0));
    assert!(requeued.deadline_ms >= now + 59_000, "a fresh deadline of the original length");

    let step = deps.submit(id, None).await.unwrap();
    let after = stack.store.get_run_with_history(&id).await.unwrap().unwrap();
    assert_eq!(after.status, RunStatus::Submitted);
    assert_eq!(after.remote_id.as_deref(), Some(remote.as_str()));
    assert!(after.transitions.last().unwrap().cause.starts_with("resumed"));
    assert!(matches!(step, Outcome::Done(ref f) if matches!(f[..], [Job::Poll { .. }])), "{step:?}");
    assert_eq!(stack.emu.emulator.stats().submissions, 1, "never submitted twice");
}

#[tokio::test]
async fn a_poll_whose_successor_was_lost_pushes_it_again() {
    let stack = Stack::start(slow(), Duration::from_secs(60)).await;
    let deps = stack.deps(limiter(60_000, 100, 100)).await;
    let doc = json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": "lost", "channel": "chat"}});
    let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
    deps.submit(id, None).await.unwrap();
    let first = deps.poll(id, 0, None).await.unwrap();
    let Outcome::Done(f) = &first else { panic!("{first:?}") };
    let [Job::Poll { attempt: 1, generation, .. }] = f[..] else { panic!("{first:?}") };
    // The process died before pushing that job: apalis re-delivers poll 0.
    let again = deps.poll(id, 0, None).await.unwrap();
    let Outcome::Done(f) = &again else { panic!("{again:?}") };
    assert!(matches!(f[..], [Job::Poll { attempt: 1, generation: g, .. }] if g == generation), "{again:?}");
    // An older copy does nothing.
    let status = stack.store.get_run(&id).await.unwrap().unwrap().status;
    assert!(stack.store.advance(&id, gcrun_store::Counter::Poll, 1, status, &RunUpdate::default()).await.unwrap());
    assert_eq!(deps.poll(id, 0, None).await.unwrap(), Outcome::Done(vec![]));
}

async fn receiver(status: StatusCode, headers: &'static [(&'static str, &'static str)]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || async move {
            let mut h = HeaderMap::new();
            for (k, v) in headers {
                h.insert(*k, v.parse().unwrap());
            }
            (status, h)
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn hostile_webhook_receivers_neither_fool_nor_crash_the_worker() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let deps = stack.deps(limiter(60_000, 100, 100)).await;
    let redirect = receiver(StatusCode::FOUND, &[("location", "http://127.0.0.1:9/elsewhere")]).await;
    let absurd = receiver(StatusCode::SERVICE_UNAVAILABLE, &[("retry-after", "1e300")]).await;
    let huge = receiver(StatusCode::TOO_MANY_REQUESTS, &[("retry-after", "18446744073709551615")]).await;
    for (url, expect_dead) in [(redirect, true), (absurd, false), (huge, false)] {
        let doc = json!({"flavor": "execute", "actionId": LOOKUP, "inputs": {"customerId": "w", "channel": "chat"}, "webhookUrl": url});
        let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
        let step = deps.submit(id, None).await.unwrap();
        assert!(matches!(step, Outcome::Done(ref f) if matches!(f[..], [Job::Webhook { attempt: 0, .. }])), "{step:?}");
        let step = deps.webhook(id, 0, None).await.unwrap();
        let rec = stack.store.get_run(&id).await.unwrap().unwrap();
        if expect_dead {
            assert_eq!(rec.webhook.status, Some(WebhookStatus::Dead), "a redirect is not a delivery");
            assert!(rec.webhook.last_error.unwrap().contains("redirect"));
        } else {
            let Outcome::Done(f) = step else { panic!() };
            let [Job::Webhook { attempt: 1, after, .. }] = f[..] else { panic!("{f:?}") };
            assert!(after <= Duration::from_secs(3_601), "Retry-After is capped (plus its jitter): {after:?}");
            stack.queues.push(f[0]).await.unwrap(); // and can be scheduled without overflow
        }
    }
}

#[tokio::test]
async fn runs_whose_jobs_were_lost_are_swept_to_an_end() {
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    // Records whose jobs never made it to Redis (say, a Redis without AOF
    // restarted): one accepted, one mid-poll. Both are past their deadline.
    let now = now_ms();
    let request = |name: &str| {
        gcrun_model::RunRequest::builder(gcrun_model::Flavor::Runs, LOOKUP)
            .input("customerId", name)
            .input("channel", "chat")
            .build(&gcrun_model::RequestLimits::default())
            .unwrap()
    };
    let accepted = gcrun_model::RunId::new();
    stack.store.create_run(accepted, &request("a"), now - 10_000, now - 5_000).await.unwrap();
    let polling = gcrun_model::RunId::new();
    stack.store.create_run(polling, &request("b"), now - 10_000, now - 5_000).await.unwrap();
    for (from, to) in [(RunStatus::Accepted, RunStatus::Validated), (RunStatus::Validated, RunStatus::Submitted)] {
        let u = RunUpdate { remote_id: Some("lost-remote".into()), ..RunUpdate::default() };
        stack.store.transition(&polling, from, to, now - 9_000, "before the loss", &u).await.unwrap();
    }
    assert_eq!(stack.store.overdue(now, 0, 10).await.unwrap().len(), 2);
    let settings = gcrun_worker::RunSettings {
        sweep_interval: Duration::from_millis(100),
        sweep_grace: Duration::ZERO,
        ..gcrun_worker::RunSettings::default()
    };
    let worker = stack.start_worker_with(limiter(60_000, 100, 100), settings).await;
    stack.wait_all_terminal(&[accepted, polling], Duration::from_secs(20)).await;
    worker.stop().await;
    for id in [accepted, polling] {
        assert_eq!(stack.store.get_run(&id).await.unwrap().unwrap().status, RunStatus::TimedOut);
    }
    assert!(stack.store.overdue(now_ms(), 0, 10).await.unwrap().is_empty(), "ended runs leave the open set");
    assert_eq!(stack.emu.emulator.stats().submissions, 0, "nothing past its deadline is submitted");
}

/// A worker whose sweeper looks five times a second, at webhooks owed for
/// more than a second.
fn sweeping_often(stack: &Stack) -> gcrun_worker::WorkerSettings {
    stack.worker_settings(
        limiter(60_000, 100, 100),
        gcrun_worker::RunSettings {
            poll_interval: Duration::from_millis(20),
            sweep_interval: Duration::from_millis(200),
            sweep_grace: Duration::from_secs(1),
            ..gcrun_worker::RunSettings::default()
        },
    )
}

#[tokio::test]
async fn a_webhook_whose_delivery_job_was_lost_is_dead_lettered_for_an_operator_not_pending_forever() {
    use gcrun_model::RetrySchedule;
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    stack.sink.lock().unwrap().refuse_first = 1;
    let mut settings = sweeping_often(&stack);
    // The retry after the refused first attempt is far off: its job sits in
    // the schedule, where the test loses it as a Redis without AOF would.
    let far = Duration::from_secs(60);
    settings.policy.webhook_schedule = RetrySchedule { base: far, cap: far, floor: far };
    let worker = stack.start_worker_from(settings).await;
    let doc =
        json!({"flavor": "execute", "actionId": LOOKUP, "inputs": {"customerId": "lost-hook", "channel": "chat"}});
    let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
    let rec = wait_until("the first attempt refused", Duration::from_secs(20), || async {
        stack.store.get_run(&id).await.unwrap().filter(|r| r.webhook.attempts == 1)
    })
    .await;
    let job = Job::Webhook { run: id, generation: rec.webhook_generation(), attempt: 1, after: Duration::ZERO };
    let engine_id = job.engine_id();
    let mut conn = stack.store.connection();
    let removed: (i64, i64) = redis::pipe()
        .cmd("HDEL")
        .arg("{gcrun}:q:webhook:jobs")
        .arg(&engine_id)
        .cmd("ZREM")
        .arg("{gcrun}:q:webhook:scheduled")
        .arg(&engine_id)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(removed, (1, 1), "the retry was scheduled, and is gone");

    // The sweeper finds the webhook owed with no job, and dead-letters it.
    let dead = wait_until("the lost webhook dead-lettered", Duration::from_secs(20), || async {
        stack.store.get_run(&id).await.unwrap().filter(|r| r.webhook.status == Some(WebhookStatus::Dead))
    })
    .await;
    assert!(dead.webhook.last_error.unwrap().contains("delivery job was lost"));
    let operator = gcrun_producer::operator::Operator::new(stack.store.clone(), stack.queues.clone());
    assert_eq!(operator.dead_webhooks().await.unwrap().len(), 1);
    // An operator requeues it: delivered.
    operator.requeue_webhooks(&[id]).await.unwrap();
    wait_until("the requeued webhook delivered", Duration::from_secs(20), || async {
        stack.store.get_run(&id).await.unwrap().filter(|r| r.webhook.status == Some(WebhookStatus::Delivered))
    })
    .await;
    worker.stop().await;
}

/// The first webhook attempt is made inline by the job that ended the run,
/// so it has no job of its own. If that job died after storing the end
/// and is not redelivered within the grace, the sweeper finds the webhook
/// owed with no job: it pushes the first attempt (which is then
/// delivered), rather than dead-lettering a webhook nobody tried.
#[tokio::test]
async fn an_owed_first_attempt_with_no_job_is_pushed_by_the_sweeper_not_dead_lettered() {
    use gcrun_queue::engine::Queue;
    let stack = Stack::start(EmulatorConfig::default(), Duration::from_secs(60)).await;
    let doc = json!({"flavor": "runs", "actionId": LOOKUP, "inputs": {"customerId": "owed", "channel": "chat"}});
    let id = stack.producer.enqueue_value(&doc).await.unwrap().run_id;
    // The ending job's state: the end stored, the webhook owed, and the job
    // itself leased by a worker that died (its lease runs for an hour).
    let leased = stack.queues.engine().fetch(Queue::Submit, 1, Duration::from_secs(3_600)).await.unwrap();
    assert_eq!(leased.jobs.len(), 1);
    stack.end_owing_webhook(&id).await;

    let worker = stack.start_worker_from(sweeping_often(&stack)).await;
    let rec = wait_until("the owed webhook delivered", Duration::from_secs(20), || async {
        stack.store.get_run(&id).await.unwrap().filter(|r| r.webhook.status == Some(WebhookStatus::Delivered))
    })
    .await;
    worker.stop().await;
    assert_eq!(rec.webhook.attempts, 1);
    assert_eq!(stack.sink.lock().unwrap().unique_events(), 1);
}
