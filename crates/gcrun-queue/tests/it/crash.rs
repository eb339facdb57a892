//! Leases against real processes: a worker process whose jobs hang holds
//! them for as long as it lives (its leases are renewed), and when it is
//! killed with SIGKILL mid-job, each of its jobs runs again once, on the
//! survivor, only after its lease lapsed.
//!
//! The worker processes are this test binary run again in child mode
//! (`crash::child_worker`, ignored unless the parent starts it with
//! `GCRUN_CRASH_CHILD` set): an apalis worker on the engine whose handler
//! records each start in Redis, then hangs or finishes.

use std::process::{Child, Command};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis::prelude::{BoxDynError, Data, Monitor, WorkerBuilder, WorkerBuilderExt};
use gcrun_harness::{RedisServer, wait_until};
use gcrun_model::RunId;
use gcrun_queue::backend::{BackendSettings, EngineBackend};
use gcrun_queue::engine::{Engine, EngineLimits, Queue};
use gcrun_queue::{Job, PollJob};

const LEASE: Duration = Duration::from_millis(1_500);
const JOBS: u32 = 20;
const STARTS: &str = "crash:starts";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[derive(Clone)]
struct Child_ {
    name: String,
    hang: bool,
    conn: gcrun_redis::Conn,
}

async fn record_then_hang(job: PollJob, me: Data<Child_>) -> Result<(), BoxDynError> {
    let mut conn = me.conn.clone();
    let entry = format!("{}|{}|{}", job.attempt, me.name, now_ms());
    redis::cmd("RPUSH").arg(STARTS).arg(entry).query_async::<()>(&mut conn).await?;
    if me.hang {
        tokio::time::sleep(Duration::from_secs(3_600)).await;
    }
    Ok(())
}

/// The child process's body; does nothing in a normal test run.
#[tokio::test]
#[ignore = "run by crash tests as a child process"]
async fn child_worker() {
    let Ok(url) = std::env::var("GCRUN_CRASH_CHILD") else { return };
    let me = Child_ {
        name: std::env::var("GCRUN_CRASH_NAME").unwrap(),
        hang: std::env::var("GCRUN_CRASH_HANG").is_ok(),
        conn: gcrun_redis::Conn::open(&gcrun_redis::RedisTarget::new(url.as_str())).await.unwrap(),
    };
    let engine = Engine::new(me.conn.clone(), EngineLimits::default());
    engine.listen(gcrun_redis::Subscriber::new(gcrun_redis::RedisTarget::new(url.as_str())));
    let settings = BackendSettings {
        concurrency: 32,
        lease: LEASE,
        max_idle: Duration::from_millis(100),
        ..BackendSettings::default()
    };
    Monitor::new()
        .register(move |_| {
            WorkerBuilder::new(me.name.clone())
                .backend(EngineBackend::<PollJob>::new(engine.clone(), Queue::Poll, settings))
                .data(me.clone())
                .concurrency(32)
                .build(record_then_hang)
        })
        .run()
        .await
        .unwrap();
}

/// A child worker process, SIGKILLed when dropped.
struct Worker(Child);

impl Worker {
    fn spawn(redis: &RedisServer, name: &str, hang: bool) -> Self {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["crash::child_worker", "--exact", "--ignored", "--nocapture", "--test-threads", "1"])
            .env("GCRUN_CRASH_CHILD", redis.url())
            .env("GCRUN_CRASH_NAME", name)
            .stdout(std::process::Stdio::null());
        if hang {
            cmd.env("GCRUN_CRASH_HANG", "1");
        }
        Worker(cmd.spawn().unwrap())
    }

    fn kill(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// (attempt, worker, start ms) of every start so far.
async fn starts(conn: &mut redis::aio::MultiplexedConnection) -> Vec<(u32, String, u64)> {
    let raw: Vec<String> = redis::cmd("LRANGE").arg(STARTS).arg(0).arg(-1).query_async(conn).await.unwrap();
    raw.iter()
        .map(|e| {
            let mut parts = e.split('|');
            let attempt = parts.next().unwrap().parse().unwrap();
            let name = parts.next().unwrap().to_string();
            (attempt, name, parts.next().unwrap().parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_jobs_run_again_once_after_their_lease_and_never_while_it_lives() {
    let redis = RedisServer::start();
    let conn = gcrun_redis::Conn::open(&gcrun_redis::RedisTarget::new(redis.url())).await.unwrap();
    let engine = Engine::new(conn, EngineLimits::default());
    let mut raw = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let run = RunId::new();
    let jobs: Vec<Job> =
        (0..JOBS).map(|attempt| Job::Poll { run, generation: 1, attempt, after: Duration::ZERO }).collect();
    engine.push(&jobs).await.unwrap();

    let mut victim = Worker::spawn(&redis, "victim", true);
    wait_until("the victim to start every job", Duration::from_secs(30), || {
        let mut c = raw.clone();
        async move { (starts(&mut c).await.len() == JOBS as usize).then_some(()) }
    })
    .await;
    // A second worker comes up while the victim is alive and its jobs hang
    // for three lease periods: the victim renews its leases, so the
    // survivor must not run any of them.
    let _survivor = Worker::spawn(&redis, "survivor", false);
    let alive = std::time::Instant::now();
    while alive.elapsed() < LEASE * 3 {
        let seen = starts(&mut raw).await;
        assert!(seen.iter().all(|(_, who, _)| who == "victim"), "a live lease was handed out: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(engine.depth(Queue::Poll).await.unwrap().leased, u64::from(JOBS));

    victim.kill();
    let killed_ms = now_ms();
    wait_until("every job finished by the survivor", Duration::from_secs(30), || async {
        (engine.depth(Queue::Poll).await.unwrap().done == u64::from(JOBS)).then_some(())
    })
    .await;
    let seen = starts(&mut raw).await;
    for attempt in 0..JOBS {
        let runs: Vec<_> = seen.iter().filter(|(a, _, _)| *a == attempt).collect();
        let by = |who: &str| runs.iter().filter(|(_, w, _)| w == who).count();
        assert_eq!((by("victim"), by("survivor")), (1, 1), "job {attempt} ran once more, on the survivor: {runs:?}");
    }
    // Leases are renewed every third of a lease, so the last one the victim
    // wrote lapsed no sooner than two thirds of a lease after it died.
    let earliest = killed_ms + (LEASE.as_millis() as u64 * 2 / 3);
    let again: Vec<u64> = seen.iter().filter(|(_, w, _)| w == "survivor").map(|(_, _, at)| *at).collect();
    assert!(
        again.iter().all(|at| *at + 20 >= earliest),
        "a job ran again before its lease lapsed: {again:?}, killed at {killed_ms}"
    );
    eprintln!(
        "killed at {killed_ms}; run again {} to {} ms later (lease {} ms)",
        again.iter().min().unwrap() - killed_ms,
        again.iter().max().unwrap() - killed_ms,
        LEASE.as_millis()
    );
}
