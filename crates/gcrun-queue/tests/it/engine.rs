use std::time::Duration;

use gcrun_harness::RedisServer;
use gcrun_model::RunId;
use gcrun_queue::Job;
use gcrun_queue::engine::{Engine, EngineLimits, Queue};

const LEASE: Duration = Duration::from_secs(30);

async fn engine(limits: EngineLimits) -> (RedisServer, Engine) {
    let redis = RedisServer::start();
    let client = redis::Client::open(redis.url()).unwrap();
    let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    (redis, Engine::new(conn, limits))
}

fn poll(run: RunId, attempt: u32, after_ms: u64) -> Job {
    Job::Poll { run, generation: 7, attempt, after: Duration::from_millis(after_ms) }
}

#[tokio::test]
async fn a_step_pushed_again_is_one_job_while_the_queue_remembers_it() {
    let (_redis, engine) = engine(EngineLimits::default()).await;
    let run = RunId::new();
    assert_eq!(engine.push(&[poll(run, 0, 0), poll(run, 0, 0)], 1_000).await.unwrap(), 1);
    let fetched = engine.fetch(Queue::Poll, 10, LEASE, 1_000).await.unwrap();
    assert_eq!(fetched.jobs.len(), 1);
    assert_eq!(engine.push(&[poll(run, 0, 0)], 1_001).await.unwrap(), 0, "leased");
    assert!(engine.ack(&fetched.jobs[0].lease, &[], 1_002).await.unwrap());
    assert_eq!(engine.push(&[poll(run, 0, 0)], 1_003).await.unwrap(), 0, "done, and remembered");
    // Past the retention window it is forgotten, and a push is new again.
    assert_eq!(engine.trim(Queue::Poll, Duration::from_secs(60), Duration::from_secs(60), 70_000).await.unwrap(), 1);
    assert_eq!(engine.push(&[poll(run, 0, 0)], 70_001).await.unwrap(), 1);
    // Submit jobs get fresh ids: every push is a job.
    let submit = Job::Submit { run, after: Duration::ZERO };
    assert_eq!(engine.push(&[submit, submit], 70_002).await.unwrap(), 2);
}

#[tokio::test]
async fn schedules_are_kept_to_the_millisecond() {
    let (_redis, engine) = engine(EngineLimits::default()).await;
    let run = RunId::new();
    engine.push(&[poll(run, 0, 250)], 10_000).await.unwrap();
    let early = engine.fetch(Queue::Poll, 10, LEASE, 10_249).await.unwrap();
    assert!(early.jobs.is_empty());
    assert_eq!(early.next_due_ms, Some(10_250), "an idle worker knows when to look again");
    let due = engine.fetch(Queue::Poll, 10, LEASE, 10_250).await.unwrap();
    assert_eq!(due.jobs.len(), 1);
    assert_eq!(due.next_due_ms, None);
    assert_eq!(due.jobs[0].payload, format!(r#"{{"run":"{run}","attempt":0}}"#));
}

#[tokio::test]
async fn a_backlog_of_twenty_thousand_due_jobs_drains_in_bounded_fetches() {
    // apalis-redis wedges for good past about 8,000 due jobs (one unpack of
    // them all); the engine promotes a bounded slice per fetch.
    let (_redis, engine) = engine(EngineLimits::default()).await;
    let jobs: Vec<Job> = (0..20_000).map(|i| poll(RunId::new(), i, 0)).collect();
    assert_eq!(engine.push(&jobs, 1_000).await.unwrap(), 20_000);
    // All of them came due at once, long ago, while no worker ran.
    let mut leased = 0;
    let mut calls = 0;
    while leased < 20_000 {
        let fetched = engine.fetch(Queue::Poll, 100, LEASE, 5_000_000).await.unwrap();
        assert!(!fetched.jobs.is_empty(), "a fetch always makes progress ({leased} leased)");
        for job in &fetched.jobs {
            assert!(engine.ack(&job.lease, &[], 5_000_000).await.unwrap());
        }
        leased += fetched.jobs.len();
        calls += 1;
        assert!(calls < 400, "bounded work per call, not a stall");
    }
    let depth = engine.depth(Queue::Poll).await.unwrap();
    assert_eq!((depth.ready, depth.scheduled, depth.leased, depth.done), (0, 0, 0, 20_000));
}

#[tokio::test]
async fn an_ack_pushes_the_successors_in_the_same_script_and_only_for_the_lease_holder() {
    let (_redis, engine) = engine(EngineLimits::default()).await;
    let run = RunId::new();
    engine.push(&[Job::Submit { run, after: Duration::ZERO }], 1_000).await.unwrap();
    let first = engine.fetch(Queue::Submit, 1, Duration::from_millis(100), 1_000).await.unwrap().jobs.remove(0).lease;
    assert_eq!(first.delivery, 1);
    // The lease lapses (the worker hung); another worker takes the job.
    assert_eq!(engine.recover(Queue::Submit, 1_200).await.unwrap(), 1);
    let second = engine.fetch(Queue::Submit, 1, LEASE, 1_200).await.unwrap().jobs.remove(0).lease;
    assert_eq!((second.id.as_str(), second.delivery), (first.id.as_str(), 2));
    // The first copy wakes up and finishes: it holds no lease, so nothing moves.
    let next = poll(run, 0, 0);
    assert!(!engine.ack(&first, &[next], 1_300).await.unwrap());
    assert!(!engine.renew(&first, LEASE, 1_300).await.unwrap());
    assert_eq!(engine.depth(Queue::Poll).await.unwrap().ready, 0, "no successor from a stale copy");
    // The lease holder finishes, and its successors exist the same moment.
    assert!(engine.renew(&second, LEASE, 1_300).await.unwrap());
    let hook = Job::Webhook { run, generation: 9, attempt: 0, after: Duration::from_secs(5) };
    assert!(engine.ack(&second, &[next, hook], 1_400).await.unwrap());
    let (submit, polls, hooks) = (
        engine.depth(Queue::Submit).await.unwrap(),
        engine.depth(Queue::Poll).await.unwrap(),
        engine.depth(Queue::Webhook).await.unwrap(),
    );
    assert_eq!((submit.leased, submit.done), (0, 1));
    assert_eq!((polls.ready, hooks.scheduled), (1, 1));
}

#[tokio::test]
async fn a_job_given_back_or_killed_goes_where_it_was_told() {
    let (_redis, engine) = engine(EngineLimits::default()).await;
    let run = RunId::new();
    engine.push(&[poll(run, 0, 0), poll(run, 1, 0)], 1_000).await.unwrap();
    let jobs: Vec<_> =
        engine.fetch(Queue::Poll, 2, LEASE, 1_000).await.unwrap().jobs.into_iter().map(|j| j.lease).collect();
    assert!(engine.retry(&jobs[0], Duration::from_millis(500), 1_000).await.unwrap());
    assert!(engine.kill(&jobs[1], "malformed job: run id is not a UUID", 1_000).await.unwrap());
    assert!(engine.fetch(Queue::Poll, 2, LEASE, 1_499).await.unwrap().jobs.is_empty());
    let again = engine.fetch(Queue::Poll, 2, LEASE, 1_500).await.unwrap().jobs;
    assert_eq!((again.len(), again[0].lease.delivery), (1, 2));
    let dead = engine.dead(Queue::Poll, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, jobs[1].id);
    assert!(dead[0].2.contains("not a UUID"), "{dead:?}");
    assert_eq!(engine.push(&[poll(run, 1, 0)], 2_000).await.unwrap(), 0, "a dead id is not pushed again");
    // Dead jobs have their own retention.
    engine.trim(Queue::Poll, Duration::from_secs(1), Duration::from_secs(3_600), 5_000).await.unwrap();
    assert_eq!(engine.depth(Queue::Poll).await.unwrap().dead, 1);
    engine.trim(Queue::Poll, Duration::from_secs(1), Duration::from_secs(1), 5_000).await.unwrap();
    assert_eq!(engine.depth(Queue::Poll).await.unwrap().dead, 0);
}

#[tokio::test]
async fn recovery_and_retention_work_in_bounded_slices() {
    let limits = EngineLimits { sweep_per_call: 10, ..EngineLimits::default() };
    let (_redis, engine) = engine(limits).await;
    let jobs: Vec<Job> = (0..25).map(|i| poll(RunId::new(), i, 0)).collect();
    engine.push(&jobs, 1_000).await.unwrap();
    let leased = engine.fetch(Queue::Poll, 25, Duration::from_millis(10), 1_000).await.unwrap().jobs;
    assert_eq!(leased.len(), 25);
    let mut recovered = Vec::new();
    for _ in 0..4 {
        recovered.push(engine.recover(Queue::Poll, 2_000).await.unwrap());
    }
    assert_eq!(recovered, vec![10, 10, 5, 0]);
    assert_eq!(engine.depth(Queue::Poll).await.unwrap().ready, 25, "every expired lease is back");
}
