use std::sync::{Arc, Mutex};
use std::time::Duration;

use apalis::prelude::{AbortError, BoxDynError, Data, Monitor, WorkerBuilder, WorkerBuilderExt};
use gcrun_harness::{RedisServer, wait_until};
use gcrun_model::RunId;
use gcrun_queue::backend::{BackendSettings, EngineBackend};
use gcrun_queue::engine::{Engine, EngineLimits, Queue};
use gcrun_queue::{Job, PollJob};

type Seen = Arc<Mutex<Vec<u32>>>;

/// Attempt 7 aborts; attempt 8 fails once (an infrastructure error), then
/// succeeds; the rest succeed.
async fn handler(job: PollJob, seen: Data<Seen>) -> Result<(), BoxDynError> {
    let first_time = {
        let mut seen = seen.lock().unwrap();
        let first = !seen.contains(&job.attempt);
        seen.push(job.attempt);
        first
    };
    match job.attempt {
        7 => Err(AbortError::new("step says: unusable").into()),
        8 if first_time => Err(std::io::Error::other("redis blip").into()),
        _ => Ok(()),
    }
}

#[tokio::test]
async fn an_apalis_worker_on_the_engine_settles_every_job_and_survives_bad_ones() {
    let redis = RedisServer::start();
    let conn = gcrun_redis::Conn::open(&gcrun_redis::RedisTarget::new(redis.url())).await.unwrap();
    let engine = Engine::new(conn, EngineLimits::default());
    let run = RunId::new();
    let jobs: Vec<Job> =
        (0..40).map(|attempt| Job::Poll { run, generation: 1, attempt, after: Duration::from_millis(20) }).collect();
    engine.push(&jobs).await.unwrap();
    assert!(engine.push_raw(Queue::Poll, "garbage", r#"{"foo":1}"#).await.unwrap());
    // A rolling deploy: a payload of the previous version (before `v`) runs;
    // one from a newer release is left for a newer worker.
    assert!(engine.push_raw(Queue::Poll, "older", &format!(r#"{{"run":"{run}","attempt":200}}"#)).await.unwrap());
    assert!(
        engine.push_raw(Queue::Poll, "newer", &format!(r#"{{"v":99,"run":"{run}","attempt":300}}"#)).await.unwrap()
    );

    let seen: Seen = Arc::default();
    let settings =
        BackendSettings { concurrency: 8, retry_base: Duration::from_millis(50), ..BackendSettings::default() };
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let (e, s) = (engine.clone(), seen.clone());
    let monitor = Monitor::new()
        .register(move |_| {
            WorkerBuilder::new("engine-test")
                .backend(EngineBackend::<PollJob>::new(e.clone(), Queue::Poll, settings))
                .data(s.clone())
                .concurrency(8)
                .build(handler)
        })
        .shutdown_timeout(Duration::from_secs(5));
    let running = tokio::spawn(monitor.run_with_signal(async move {
        let _ = rx.wait_for(|stop| *stop).await;
        Ok(())
    }));

    let depth = wait_until("every job settled", Duration::from_secs(20), || async {
        let d = engine.depth(Queue::Poll).await.unwrap();
        (d.ready + d.scheduled + d.leased == 1 && d.done == 40 && d.dead == 2).then_some(d)
    })
    .await;
    // Jobs pushed while the worker idles are picked up too (woken by the push).
    let late = Job::Poll { run, generation: 1, attempt: 100, after: Duration::ZERO };
    engine.push(&[late]).await.unwrap();
    wait_until("the late job", Duration::from_secs(5), || async {
        (engine.depth(Queue::Poll).await.unwrap().done == 41).then_some(())
    })
    .await;
    // The newer payload keeps being handed back (once a second), well past
    // the poison cap, and is never dead-lettered.
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let _ = tx.send(true);
    running.await.unwrap().unwrap();

    assert_eq!(depth.dead, 2, "the aborted job and the undecodable one");
    let dead = engine.dead(Queue::Poll, 0, 10).await.unwrap();
    let reasons: Vec<&str> = dead.iter().filter_map(|d| d.reason.as_deref()).collect();
    assert!(reasons.iter().any(|r| r.contains("unusable")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("does not decode")), "{reasons:?}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().filter(|a| **a == 8).count(), 2, "a failed job is run again");
    assert_eq!(seen.iter().filter(|a| **a == 3).count(), 1, "a settled job is not");
    assert!(seen.contains(&200), "the previous payload version is read");
    assert!(!seen.contains(&300), "a newer one is not run by this release, nor dead-lettered");
    let newer = engine.depth(Queue::Poll).await.unwrap();
    assert_eq!((newer.ready + newer.scheduled + newer.leased, newer.dead), (1, 2));
    // Its hand-backs used up no delivery, so the newer worker that takes it
    // will not mistake it for a poison job.
    let mut conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let deliveries: Option<u64> =
        redis::cmd("HGET").arg("{gcrun}:q:poll:deliveries").arg("newer").query_async(&mut conn).await.unwrap();
    assert!(deliveries.unwrap_or(0) <= 1, "hand-backs counted: {deliveries:?}");
}

async fn forever(_job: PollJob) -> Result<(), BoxDynError> {
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::test]
async fn a_job_cut_off_by_the_shutdown_timeout_is_given_back_not_left_leased() {
    let redis = RedisServer::start();
    let conn = gcrun_redis::Conn::open(&gcrun_redis::RedisTarget::new(redis.url())).await.unwrap();
    let engine = Engine::new(conn, EngineLimits::default());
    let job = Job::Poll { run: RunId::new(), generation: 1, attempt: 0, after: Duration::ZERO };
    engine.push(&[job]).await.unwrap();
    let e = engine.clone();
    let monitor = Monitor::new()
        .register(move |_| {
            WorkerBuilder::new("stuck")
                .backend(EngineBackend::<PollJob>::new(e.clone(), Queue::Poll, BackendSettings::default()))
                .build(forever)
        })
        .shutdown_timeout(Duration::from_millis(300));
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(monitor.run_with_signal(async move {
        let _ = rx.wait_for(|stop| *stop).await;
        Ok(())
    }));
    wait_until("the job to be leased", Duration::from_secs(5), || async {
        (engine.depth(Queue::Poll).await.unwrap().leased == 1).then_some(())
    })
    .await;
    let _ = tx.send(true);
    running.await.unwrap().unwrap();
    // Its 30 s lease is not left to lapse: the job is ready again at once.
    let d = wait_until("the job to be given back", Duration::from_secs(3), || async {
        let d = engine.depth(Queue::Poll).await.unwrap();
        (d.leased == 0).then_some(d)
    })
    .await;
    assert_eq!(d.ready + d.scheduled, 1);
}
