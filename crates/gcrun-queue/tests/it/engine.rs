//! The engine's scripts against a real Redis. Times are Redis's own, so
//! schedules and leases are checked by waiting for them (with deadlines).

use std::time::{Duration, Instant};

use gcrun_harness::{RedisServer, wait_until};
use gcrun_model::RunId;
use gcrun_queue::Job;
use gcrun_queue::engine::{Engine, EngineLimits, Queue};

const LEASE: Duration = Duration::from_secs(30);
const FOREVER: Duration = Duration::from_secs(3_600);

async fn engine(limits: EngineLimits) -> (RedisServer, Engine) {
    let redis = RedisServer::start();
    let conn = gcrun_redis::Conn::open(&gcrun_redis::RedisTarget::new(redis.url())).await.unwrap();
    (redis, Engine::new(conn, limits))
}

fn poll(run: RunId, attempt: u32, after_ms: u64) -> Job {
    Job::Poll { run, generation: 7, attempt, after: Duration::from_millis(after_ms) }
}

#[tokio::test]
async fn a_step_pushed_again_is_one_job_while_the_queue_remembers_it() {
    let (_redis, engine) = engine(EngineLimits::default()).await;
    let run = RunId::new();
    assert_eq!(engine.push(&[poll(run, 0, 0), poll(run, 0, 0)]).await.unwrap(), 1);
    let fetched = engine.fetch(Queue::Poll, 10, LEASE).await.unwrap();
    assert_eq!(fetched.jobs.len(), 1);
    assert_eq!(engine.push(&[poll(run, 0, 0)]).await.unwrap(), 0, "leased");
    assert!(engine.ack(&fetched.jobs[0].lease, &[]).await.unwrap());
    assert_eq!(engine.push(&[poll(run, 0, 0)]).await.unwrap(), 0, "done, and remembered");
    // Within the retention window nothing is forgotten; past it, it is.
    assert_eq!(engine.trim(Queue::Poll, FOREVER, FOREVER).await.unwrap(), 0);
    assert_eq!(engine.trim(Queue::Poll, Duration::ZERO, FOREVER).await.unwrap(), 1);
    assert_eq!(engine.push(&[poll(run, 0, 0)]).await.unwrap(), 1);
    // Submit jobs get fresh ids: every push is a job.
    let submit = Job::Submit { run, after: Duration::ZERO };
    assert_eq!(engine.push(&[submit, submit]).await.unwrap(), 2);
}

#[tokio::test]
async fn schedules_are_kept_to_the_millisecond() {
    let (_redis, engine) = engine(EngineLimits::default()).await;
    let run = RunId::new();
    let pushed = Instant::now();
    engine.push(&[poll(run, 0, 300)]).await.unwrap();
    let early = engine.fetch(Queue::Poll, 10, LEASE).await.unwrap();
    if pushed.elapsed() < Duration::from_millis(250) {
        assert!(early.jobs.is_empty(), "not due yet");
        let wait = early.next_due_in.unwrap();
        // Due times count from Redis's now rounded up to the millisecond.
        assert!(wait <= Duration::from_millis(301) && wait >= Duration::from_millis(200), "{wait:?}");
    }
    let due = wait_until("the job to fall due", Duration::from_secs(5), || async {
        let f = engine.fetch(Queue::Poll, 10, LEASE).await.unwrap();
        (!f.jobs.is_empty()).then_some(f)
    })
    .await;
    let waited = pushed.elapsed();
    assert!(waited >= Duration::from_millis(300), "not a moment early: {waited:?}");
    assert_eq!(due.next_due_in, None);
    assert_eq!(due.jobs[0].payload, format!(r#"{{"v":1,"run":"{run}","attempt":0}}"#));
}

#[tokio::test]
async fn a_backlog_of_twenty_thousand_due_jobs_drains_in_bounded_fetches() {
    // apalis-redis wedges for good past about 8,000 due jobs (one unpack of
    // them all); the engine promotes a bounded slice per fetch.
    let (_redis, engine) = engine(EngineLimits::default()).await;
    let jobs: Vec<Job> = (0..20_000).map(|i| poll(RunId::new(), i, 50)).collect();
    assert_eq!(engine.push(&jobs).await.unwrap(), 20_000);
    // All of them come due at once while no worker runs.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut leased, mut calls) = (0, 0);
    let started = Instant::now();
    while leased < 20_000 {
        let fetched = engine.fetch(Queue::Poll, 100, LEASE).await.unwrap();
        assert!(!fetched.jobs.is_empty(), "a fetch always makes progress ({leased} leased)");
        for job in &fetched.jobs {
            assert!(engine.ack(&job.lease, &[]).await.unwrap());
        }
        leased += fetched.jobs.len();
        calls += 1;
        assert!(calls < 400, "bounded work per call, not a stall");
    }
    eprintln!("20,000 due jobs leased and acked in {calls} fetches, {:?}", started.elapsed());
    let depth = engine.depth(Queue::Poll).await.unwrap();
    assert_eq!((depth.ready, depth.scheduled, depth.leased, depth.done), (0, 0, 0, 20_000));
}

#[tokio::test]
async fn an_ack_pushes_the_successors_in_the_same_script_and_only_for_the_lease_holder() {
    let (_redis, engine) = engine(EngineLimits::default()).await;
    let run = RunId::new();
    engine.push(&[Job::Submit { run, after: Duration::ZERO }]).await.unwrap();
    let first = engine.fetch(Queue::Submit, 1, Duration::from_millis(50)).await.unwrap().jobs.remove(0).lease;
    assert_eq!(first.delivery, 1);
    // The lease lapses (the worker hung); another worker takes the job.
    let second = wait_until("the lapsed lease to be recovered", Duration::from_secs(5), || async {
        engine.recover(Queue::Submit).await.unwrap();
        engine.fetch(Queue::Submit, 1, LEASE).await.unwrap().jobs.pop().map(|j| j.lease)
    })
    .await;
    assert_eq!((second.id.as_str(), second.delivery), (first.id.as_str(), 2));
    // The first copy wakes up and finishes: it holds no lease, so the job
    // stays the second copy's; the successors its write called for are
    // pushed all the same (their ids dedupe).
    let next = poll(run, 0, 0);
    assert!(!engine.ack(&first, &[next]).await.unwrap());
    assert!(!engine.renew(&first, LEASE).await.unwrap());
    let submit = engine.depth(Queue::Submit).await.unwrap();
    assert_eq!((submit.leased, submit.done), (1, 0), "still the live copy's");
    assert_eq!(engine.depth(Queue::Poll).await.unwrap().ready, 1);
    // The lease holder finishes, and its successors exist the same moment.
    assert!(engine.renew(&second, LEASE).await.unwrap());
    let hook = Job::Webhook { run, generation: 9, attempt: 0, after: Duration::from_secs(5) };
    assert!(engine.ack(&second, &[next, hook]).await.unwrap());
    let (submit, polls, hooks) = (
        engine.depth(Queue::Submit).await.unwrap(),
        engine.depth(Queue::Poll).await.unwrap(),
        engine.depth(Queue::Webhook).await.unwrap(),
    );
    assert_eq!((submit.leased, submit.done), (0, 1));
    assert_eq!((polls.ready, hooks.scheduled), (1, 1));
}

#[tokio::test]
async fn a_live_lease_is_not_recovered_an_expired_one_is() {
    let (_redis, engine) = engine(EngineLimits::default()).await;
    engine.push(&[poll(RunId::new(), 0, 0)]).await.unwrap();
    let jobs = engine.fetch(Queue::Poll, 10, Duration::from_millis(300)).await.unwrap().jobs;
    assert_eq!(jobs.len(), 1);
    assert_eq!(engine.recover(Queue::Poll).await.unwrap(), 0, "the lease is live");
    let leased = Instant::now();
    wait_until("the lease to lapse", Duration::from_secs(5), || async {
        (engine.recover(Queue::Poll).await.unwrap() == 1).then_some(())
    })
    .await;
    assert!(leased.elapsed() >= Duration::from_millis(250), "not before its time: {:?}", leased.elapsed());
}

#[tokio::test]
async fn a_job_given_back_or_killed_goes_where_it_was_told() {
    let (_redis, engine) = engine(EngineLimits::default()).await;
    let run = RunId::new();
    engine.push(&[poll(run, 0, 0), poll(run, 1, 0)]).await.unwrap();
    let jobs: Vec<_> = engine.fetch(Queue::Poll, 2, LEASE).await.unwrap().jobs.into_iter().map(|j| j.lease).collect();
    assert!(engine.retry(&jobs[0], Duration::from_millis(200)).await.unwrap());
    assert!(engine.kill(&jobs[1], "malformed job: run id is not a UUID").await.unwrap());
    let again = wait_until("the job given back to fall due", Duration::from_secs(5), || async {
        let jobs = engine.fetch(Queue::Poll, 2, LEASE).await.unwrap().jobs;
        (!jobs.is_empty()).then_some(jobs)
    })
    .await;
    assert_eq!((again.len(), again[0].lease.delivery), (1, 2));
    let dead = engine.dead(Queue::Poll, 0, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, jobs[1].id);
    assert!(dead[0].reason.as_deref().unwrap_or("").contains("not a UUID"), "{dead:?}");
    assert!(dead[0].payload.is_some());
    assert_eq!(engine.push(&[poll(run, 1, 0)]).await.unwrap(), 0, "a dead id is not pushed again");
    // Dead jobs have their own retention.
    engine.trim(Queue::Poll, Duration::ZERO, FOREVER).await.unwrap();
    assert_eq!(engine.depth(Queue::Poll).await.unwrap().dead, 1);
    engine.trim(Queue::Poll, Duration::ZERO, Duration::ZERO).await.unwrap();
    assert_eq!(engine.depth(Queue::Poll).await.unwrap().dead, 0);
}

#[tokio::test]
async fn recovery_works_in_bounded_slices() {
    let limits = EngineLimits { sweep_per_call: 10, ..EngineLimits::default() };
    let (_redis, engine) = engine(limits).await;
    let jobs: Vec<Job> = (0..25).map(|i| poll(RunId::new(), i, 0)).collect();
    engine.push(&jobs).await.unwrap();
    let leased = engine.fetch(Queue::Poll, 25, Duration::from_millis(10)).await.unwrap().jobs;
    assert_eq!(leased.len(), 25);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut recovered = Vec::new();
    for _ in 0..4 {
        recovered.push(engine.recover(Queue::Poll).await.unwrap());
    }
    assert_eq!(recovered, vec![10, 10, 5, 0]);
    assert_eq!(engine.depth(Queue::Poll).await.unwrap().ready, 25, "every expired lease is back");
}

#[tokio::test]
async fn a_copy_whose_lease_lapsed_cannot_kill_the_job_another_worker_now_runs() {
    let (_redis, engine) = engine(EngineLimits::default()).await;
    engine.push(&[poll(RunId::new(), 0, 0)]).await.unwrap();
    let stale = engine.fetch(Queue::Poll, 1, Duration::from_millis(50)).await.unwrap().jobs.remove(0).lease;
    wait_until("the lease to be recovered", Duration::from_secs(5), || async {
        (engine.recover(Queue::Poll).await.unwrap() == 1).then_some(())
    })
    .await;
    // Recovered (ready again), not yet leased: the stale copy's kill must
    // not leave a dead job that is also waiting to run.
    assert!(!engine.kill(&stale, "stale copy says abort").await.unwrap());
    let d = engine.depth(Queue::Poll).await.unwrap();
    assert_eq!((d.ready, d.dead), (1, 0));
    let live = engine.fetch(Queue::Poll, 1, LEASE).await.unwrap().jobs.remove(0).lease;
    assert_eq!(live.delivery, 2);
    // A job given back without running does not use up a delivery.
    assert!(engine.release(&live, Duration::ZERO).await.unwrap());
    let again = engine.fetch(Queue::Poll, 1, LEASE).await.unwrap().jobs.remove(0).lease;
    assert_eq!(again.delivery, 2);
}

#[tokio::test]
async fn dead_jobs_page_requeue_under_fresh_ids_and_purge_only_what_is_still_dead() {
    let (_redis, engine) = engine(EngineLimits { push_per_call: 3, ..EngineLimits::default() }).await;
    let run = RunId::new();
    let jobs: Vec<Job> = (0..8).map(|i| poll(run, i, 0)).collect();
    engine.push(&jobs).await.unwrap();
    for leased in engine.fetch(Queue::Poll, 8, LEASE).await.unwrap().jobs {
        assert!(engine.kill(&leased.lease, "gave up").await.unwrap());
    }
    let all = engine.dead(Queue::Poll, 0, 100).await.unwrap();
    assert_eq!(all.len(), 8);
    assert!(all.windows(2).all(|w| w[0].died_ms <= w[1].died_ms), "oldest first");
    let page = engine.dead(Queue::Poll, 6, 5).await.unwrap();
    assert_eq!(page.iter().map(|d| &d.id).collect::<Vec<_>>(), all[6..].iter().map(|d| &d.id).collect::<Vec<_>>());

    // Five go back (in two script calls of at most three), under fresh ids.
    let ids: Vec<String> = all.iter().map(|d| d.id.clone()).collect();
    assert_eq!(engine.requeue_dead(Queue::Poll, &ids[..5]).await.unwrap(), 5);
    let again = engine.fetch(Queue::Poll, 10, LEASE).await.unwrap().jobs;
    assert_eq!(again.len(), 5);
    for (job, old) in again.iter().zip(&all) {
        assert!(job.lease.id.starts_with(&format!("{}~r", old.id)), "{} from {}", job.lease.id, old.id);
        assert_eq!(job.lease.delivery, 1, "a fresh start");
        assert_eq!(Some(&job.payload), old.payload.as_ref());
    }
    // The old ids stay remembered: the steps that would push them again cannot.
    assert_eq!(engine.push(&jobs[..5]).await.unwrap(), 0);
    // A purge listed before the requeue drops only what is still dead.
    assert_eq!(engine.purge_dead(Queue::Poll, &ids).await.unwrap(), 3);
    let d = engine.depth(Queue::Poll).await.unwrap();
    assert_eq!((d.dead, d.leased), (0, 5), "the requeued jobs are untouched");
    assert_eq!(engine.requeue_dead(Queue::Poll, &ids).await.unwrap(), 0, "nothing dead is left");
}

#[tokio::test]
async fn depth_tells_how_long_the_oldest_ready_job_has_waited() {
    let (_redis, engine) = engine(EngineLimits::default()).await;
    assert_eq!(engine.depth(Queue::Poll).await.unwrap().oldest_ready_ms, None);
    engine.push(&[poll(RunId::new(), 0, 0)]).await.unwrap();
    let pushed = Instant::now();
    tokio::time::sleep(Duration::from_millis(120)).await;
    engine.push(&[poll(RunId::new(), 1, 0)]).await.unwrap();
    let age = engine.depth(Queue::Poll).await.unwrap().oldest_ready_ms.unwrap();
    assert!(age >= 100 && age <= pushed.elapsed().as_millis() as u64 + 5, "{age} ms");
}

/// Commands Redis ran, by name, from `INFO commandstats` (which counts the
/// commands a script runs, as well as the script call itself).
async fn commandstats(conn: &mut redis::aio::MultiplexedConnection) -> std::collections::HashMap<String, u64> {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await.unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

#[tokio::test]
async fn a_job_costs_at_most_eight_redis_commands_on_the_hot_path() {
    // Push, fetch in batches, ack: what every job pays under load, counted
    // the way Redis counts (commands inside scripts included).
    let (redis, engine) = engine(EngineLimits::default()).await;
    let mut conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let warm: Vec<Job> = (0..10).map(|i| poll(RunId::new(), i, 0)).collect();
    engine.push(&warm).await.unwrap(); // loads the scripts
    for job in engine.fetch(Queue::Poll, 10, LEASE).await.unwrap().jobs {
        engine.ack(&job.lease, &[]).await.unwrap();
    }
    let n = 3_200;
    let before = commandstats(&mut conn).await;
    let jobs: Vec<Job> = (0..n).map(|i| poll(RunId::new(), i, 0)).collect();
    for chunk in jobs.chunks(100) {
        engine.push(chunk).await.unwrap();
    }
    let mut done = 0;
    while done < n {
        for job in engine.fetch(Queue::Poll, 32, LEASE).await.unwrap().jobs {
            assert!(engine.ack(&job.lease, &[]).await.unwrap());
            done += 1;
        }
    }
    let after = commandstats(&mut conn).await;
    let spent: u64 = after.iter().map(|(k, v)| v - before.get(k).copied().unwrap_or(0)).sum::<u64>() - 1; // the INFO
    let per_job = spent as f64 / n as f64;
    eprintln!("{per_job:.2} Redis commands per job (push in hundreds, fetch in 32s, ack one by one)");
    assert!(per_job <= 8.0, "{per_job:.2} commands per job");
}

#[tokio::test]
async fn ids_finished_under_the_first_engine_layout_stay_deduped_after_the_upgrade() {
    let (redis, engine) = engine(EngineLimits { sweep_per_call: 2, ..EngineLimits::default() }).await;
    let mut conn = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let jobs: Vec<Job> = (0..5).map(|i| poll(RunId::new(), i, 0)).collect();
    // The first layout: an ack deleted the payload and kept the id in :done.
    for job in &jobs {
        let () =
            redis::cmd("ZADD").arg("{gcrun}:q:poll:done").arg(1).arg(job.id()).query_async(&mut conn).await.unwrap();
    }
    assert_eq!(engine.migrate().await.unwrap(), 5, "in slices of two");
    assert_eq!(engine.push(&jobs).await.unwrap(), 0, "finished steps are not pushed again");
    assert_eq!(engine.migrate().await.unwrap(), 0, "once");
    assert!(engine.check_server().await.unwrap().starts_with(char::is_numeric));
}
