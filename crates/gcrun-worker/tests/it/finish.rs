//! The step script against a real Redis: a step's last act (the record's
//! compare-and-set write, the follow-up jobs, the job's ack) is one script
//! call, so no moment exists where the record moved on and the job that
//! follows is missing, or the job is acked and its write not made.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gcrun_harness::{RedisServer, wait_until};
use gcrun_model::{Flavor, RequestLimits, RunId, RunRequest, RunStatus};
use gcrun_queue::engine::{Engine, EngineLimits, Queue};
use gcrun_queue::{Job, JobHandle};
use gcrun_store::{RunUpdate, Store, StoreConfig, WriteOutcome};
use gcrun_worker::finish::finish;

const LEASE: Duration = Duration::from_secs(30);

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

async fn calls(conn: &mut redis::aio::MultiplexedConnection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await.unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            Some((name.to_string(), rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?))
        })
        .collect()
}

struct Fixture {
    redis: RedisServer,
    store: Store,
    engine: Engine,
    run: RunId,
}

async fn fixture() -> Fixture {
    let redis = RedisServer::start();
    let store = Store::open(&redis.url(), StoreConfig::default()).await.unwrap();
    let engine = Engine::new(store.connection(), EngineLimits::default());
    let run = RunId::new();
    let request = RunRequest::builder(Flavor::Runs, "custom_-_a").build(&RequestLimits::default()).unwrap();
    store.create_run(run, &request, now(), now() + 60_000).await.unwrap();
    Fixture { redis, store, engine, run }
}

async fn leased(f: &Fixture, lease: Duration) -> JobHandle {
    f.engine.push(&[Job::Submit { run: f.run, after: Duration::ZERO }]).await.unwrap();
    JobHandle::new(f.engine.fetch(Queue::Submit, 1, lease).await.unwrap().jobs.remove(0).lease)
}

fn poll(f: &Fixture, attempt: u32) -> Job {
    Job::Poll { run: f.run, generation: 1, attempt, after: Duration::from_secs(5) }
}

#[tokio::test]
async fn a_steps_last_act_writes_pushes_and_acks_in_one_script_call() {
    let f = fixture().await;
    // Load the script first (the first call of a script is a NOSCRIPT
    // miss, then a load), so the count below is the steady state.
    let warm = leased(&f, LEASE).await;
    let nothing = gcrun_store::PreparedWrite::nothing(&f.run);
    finish(&mut f.store.connection(), &f.engine, &warm, &nothing, &[]).await.unwrap();
    let job = leased(&f, LEASE).await;
    let write = f
        .store
        .prepare_transition(
            &f.run,
            RunStatus::Accepted,
            RunStatus::Validated,
            None,
            now(),
            "test",
            &RunUpdate::default(),
        )
        .unwrap();
    let mut raw = redis::Client::open(f.redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let before = calls(&mut raw).await;
    let outcome = finish(&mut f.store.connection(), &f.engine, &job, &write, &[poll(&f, 0)]).await.unwrap();
    let after = calls(&mut raw).await;
    assert_eq!(outcome, WriteOutcome::Applied);
    assert!(job.is_settled(), "the ack layer must leave it alone");
    let scripts: u64 =
        ["eval", "evalsha"].iter().map(|c| after.get(*c).unwrap_or(&0) - before.get(*c).unwrap_or(&0)).sum();
    assert_eq!(scripts, 1, "one script call for the write, the successor and the ack");

    assert_eq!(f.store.get_run(&f.run).await.unwrap().unwrap().status, RunStatus::Validated);
    let (submit, polls) = (f.engine.depth(Queue::Submit).await.unwrap(), f.engine.depth(Queue::Poll).await.unwrap());
    assert_eq!((submit.leased, submit.done), (0, 2), "acked");
    assert_eq!(polls.scheduled, 1, "the successor exists");
}

#[tokio::test]
async fn a_stale_write_pushes_nothing_and_still_ends_the_job() {
    let f = fixture().await;
    f.store
        .transition(&f.run, RunStatus::Accepted, RunStatus::Validated, now(), "another copy", &RunUpdate::default())
        .await
        .unwrap();
    let job = leased(&f, LEASE).await;
    let write = f
        .store
        .prepare_transition(
            &f.run,
            RunStatus::Accepted,
            RunStatus::Validated,
            None,
            now(),
            "late",
            &RunUpdate::default(),
        )
        .unwrap();
    let outcome = finish(&mut f.store.connection(), &f.engine, &job, &write, &[poll(&f, 0)]).await.unwrap();
    assert_eq!(outcome, WriteOutcome::Stale(Some(RunStatus::Validated)));
    let (submit, polls) = (f.engine.depth(Queue::Submit).await.unwrap(), f.engine.depth(Queue::Poll).await.unwrap());
    assert_eq!((submit.leased, submit.done), (0, 1), "the job is over");
    assert_eq!(polls.scheduled + polls.ready, 0, "a stale write calls for no successor");
}

#[tokio::test]
async fn a_copy_whose_lease_lapsed_still_writes_and_pushes_but_leaves_the_job_to_its_holder() {
    let f = fixture().await;
    let stale = leased(&f, Duration::from_millis(50)).await;
    let live = wait_until("the lapsed lease to be taken again", Duration::from_secs(5), || async {
        f.engine.recover(Queue::Submit).await.unwrap();
        f.engine.fetch(Queue::Submit, 1, LEASE).await.unwrap().jobs.pop()
    })
    .await;
    assert_eq!(live.lease.id, stale.lease().id);
    let write = f.store.prepare_update(&f.run, &RunUpdate { poll_attempts: Some(3), ..RunUpdate::default() });
    let outcome = finish(&mut f.store.connection(), &f.engine, &stale, &write, &[poll(&f, 3)]).await.unwrap();
    assert_eq!(outcome, WriteOutcome::Applied);
    assert_eq!(f.store.get_run(&f.run).await.unwrap().unwrap().poll_attempts, 3);
    let (submit, polls) = (f.engine.depth(Queue::Submit).await.unwrap(), f.engine.depth(Queue::Poll).await.unwrap());
    assert_eq!((submit.leased, submit.done), (1, 0), "still the live copy's");
    assert_eq!(polls.scheduled, 1);
    assert!(f.engine.ack(&live.lease, &[]).await.unwrap());
}
