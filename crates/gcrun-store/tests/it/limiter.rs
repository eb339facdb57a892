use std::time::Duration;

use gcrun_store::{Denied, LimiterConfig};

use crate::store;

fn config(rate: u32, burst: u32, max: u32) -> LimiterConfig {
    LimiterConfig {
        name: "org".into(),
        rate_per_minute: rate,
        burst,
        max_concurrent: max,
        lease_ttl: Duration::from_secs(10),
    }
}

#[tokio::test]
async fn the_rate_allows_a_burst_then_spaces_permits() {
    let (_redis, store) = store().await;
    let limiter = store.limiter(config(60, 3, 100)); // one a second, burst of 3
    let now = 1_000_000;
    for n in 0..3 {
        assert!(limiter.acquire(&format!("r{n}"), now).await.unwrap().is_ok(), "burst permit {n}");
    }
    let (wait, why) = limiter.acquire("r3", now).await.unwrap().unwrap_err();
    assert_eq!(why, Denied::Rate);
    assert_eq!(wait, Duration::from_secs(1));
    assert!(limiter.acquire("r3", now + 999).await.unwrap().is_err());
    assert!(limiter.acquire("r3", now + 1_000).await.unwrap().is_ok());
}

#[tokio::test]
async fn concurrency_is_bounded_by_leases_that_release_or_lapse() {
    let (_redis, store) = store().await;
    let limiter = store.limiter(config(60_000, 1_000, 2));
    let now = 5_000_000;
    assert!(limiter.acquire("a", now).await.unwrap().is_ok());
    assert!(limiter.acquire("b", now).await.unwrap().is_ok());
    assert!(limiter.acquire("a", now).await.unwrap().is_ok(), "re-asking for a held lease is not a new run");
    let (_, why) = limiter.acquire("c", now).await.unwrap().unwrap_err();
    assert_eq!(why, Denied::Concurrency);
    assert_eq!(limiter.held(now).await.unwrap(), 2);
    limiter.release("a").await.unwrap();
    assert!(limiter.acquire("c", now).await.unwrap().is_ok());
    // "b" belongs to a worker that died: its lease lapses after 10 s...
    limiter.renew("c", now + 9_000).await.unwrap();
    assert!(limiter.acquire("d", now + 9_000).await.unwrap().is_err());
    assert!(limiter.acquire("d", now + 10_001).await.unwrap().is_ok(), "b lapsed; c was renewed");
    assert!(limiter.acquire("e", now + 10_001).await.unwrap().is_err());
}

#[tokio::test]
async fn a_pause_stops_every_caller_until_it_ends() {
    let (_redis, store) = store().await;
    let a = store.limiter(config(60_000, 1_000, 100));
    let b = store.limiter(config(60_000, 1_000, 100)); // another process
    let now = 9_000_000;
    a.pause_until(now + 3_000, now).await.unwrap();
    a.pause_until(now + 1_000, now).await.unwrap(); // an earlier pause does not shorten it
    let (wait, why) = b.acquire("x", now).await.unwrap().unwrap_err();
    assert_eq!((wait, why), (Duration::from_secs(3), Denied::Paused));
    assert!(b.acquire("x", now + 3_000).await.unwrap().is_ok());
}

#[tokio::test]
async fn a_release_wakes_the_run_that_waited_longest_and_a_run_keeps_its_place() {
    let (_redis, store) = store().await;
    let limiter = store.limiter(config(60_000, 100, 1));
    assert!(limiter.acquire("holder", 1_000).await.unwrap().is_ok());
    for (run, at) in [("first", 1_001), ("second", 1_002), ("first", 1_003)] {
        assert!(limiter.acquire(run, at).await.unwrap().is_err(), "no slot");
        limiter.wait_for_slot(run, at).await.unwrap();
    }
    assert_eq!(limiter.waiting().await.unwrap(), 2, "waiting again keeps one place");
    assert_eq!(limiter.release("holder").await.unwrap().as_deref(), Some("first"));
    assert!(limiter.acquire("first", 1_010).await.unwrap().is_ok(), "the woken run gets the slot");
    assert_eq!(limiter.release("first").await.unwrap().as_deref(), Some("second"));
    assert_eq!(limiter.release("nobody").await.unwrap(), None);
    assert_eq!(limiter.waiting().await.unwrap(), 0);
    // A waiter that got a slot another way (its safety net) leaves the set,
    // and a release by a run that held no slot wakes nobody.
    assert!(limiter.acquire("holder", 2_000).await.unwrap().is_ok());
    limiter.wait_for_slot("third", 2_001).await.unwrap();
    limiter.wait_for_slot("fourth", 2_002).await.unwrap();
    assert_eq!(limiter.release("holder").await.unwrap().as_deref(), Some("third"));
    assert!(limiter.acquire("fourth", 2_003).await.unwrap().is_ok(), "fourth takes the free slot itself");
    assert_eq!(limiter.waiting().await.unwrap(), 0, "fourth no longer waits");
    limiter.wait_for_slot("fifth", 2_004).await.unwrap();
    assert_eq!(limiter.release("third").await.unwrap(), None, "third held no slot: nothing freed");
    assert_eq!(limiter.waiting().await.unwrap(), 1);
}
