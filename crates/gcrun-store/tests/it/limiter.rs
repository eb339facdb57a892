//! The shared limiter, timed by Redis's clock (`TIME` in its scripts):
//! short periods and waits on conditions with deadlines, each checked
//! against that clock.

use std::time::Duration;

use gcrun_harness::wait_until;
use gcrun_store::{Denied, Limiter, LimiterConfig, Store};

use crate::store;

fn config(rate: u32, burst: u32, max: u32) -> LimiterConfig {
    LimiterConfig {
        name: "org".into(),
        rate_per_minute: rate,
        burst,
        max_concurrent: max,
        lease_ttl: Duration::from_millis(400),
        window: Duration::from_secs(60),
    }
}

const PATIENCE: Duration = Duration::from_secs(5);

/// Waits until `lease` is granted; returns Redis's time then.
async fn granted(store: &Store, limiter: &Limiter, lease: &str, renew: Option<&str>) -> u64 {
    wait_until("a permit", PATIENCE, || async {
        if let Some(r) = renew {
            limiter.renew(r).await.unwrap();
        }
        limiter.acquire(lease).await.unwrap().outcome.ok()
    })
    .await;
    store.redis_now_ms().await.unwrap()
}

#[tokio::test]
async fn the_rate_allows_a_burst_then_spaces_permits() {
    let (_redis, store) = store().await;
    // 600 a minute: one each 100.8 ms (the minute widened by its margin),
    // after a burst of 3.
    let limiter = store.limiter(config(600, 3, 100));
    let start = store.redis_now_ms().await.unwrap();
    for n in 0..3 {
        assert!(limiter.acquire(&format!("r{n}")).await.unwrap().outcome.is_ok(), "burst permit {n}");
    }
    let (wait, why) = limiter.acquire("r3").await.unwrap().outcome.unwrap_err();
    assert_eq!(why, Denied::Rate);
    assert!(wait <= Duration::from_millis(101), "{wait:?}");
    let at = granted(&store, &limiter, "r3", None).await;
    assert!(at >= start + 100, "the fourth came {} ms after the burst", at - start);
}

/// GCRA alone lets a burst through on top of the rate, so a window that
/// holds a burst would see `burst` more permits than the limit (Genesys
/// answers those with 429s). The cap holds any window to the limit: here
/// 10 a (shortened) window of 1.2 s, with a burst of 10 granted at once,
/// then the rate's permits stop until the burst's leave the window.
#[tokio::test]
async fn no_window_ever_holds_more_permits_than_the_limit() {
    let (_redis, store) = store().await;
    let window = Duration::from_millis(1_200);
    let limiter = store.limiter(LimiterConfig { window, ..config(10, 10, 1_000) });
    let start = store.redis_now_ms().await.unwrap();
    let mut grants = Vec::new();
    for n in 0..10 {
        assert!(limiter.acquire(&format!("b{n}")).await.unwrap().outcome.is_ok(), "burst permit {n}");
        grants.push(start);
    }
    // The rate's next token comes in 121 ms (r0 is told so), but the
    // window is full then: r0 is turned back until the burst leaves it.
    let (_, why) = limiter.acquire("r0").await.unwrap().outcome.unwrap_err();
    assert_eq!(why, Denied::Rate);
    let widened = (window + gcrun_store::limiter::margin(window)).as_millis() as u64;
    for n in 0..5 {
        grants.push(granted(&store, &limiter, &format!("r{n}"), None).await);
    }
    // Every window (widened by the margin) holds at most 10 permits.
    grants.sort_unstable();
    for (i, at) in grants.iter().enumerate() {
        let within = grants[i..].iter().filter(|g| **g < at + widened).count();
        assert!(within <= 10, "{within} permits in the window from {at}: {grants:?}");
    }
    assert!(grants[10] >= start + widened, "the first after the burst came {} ms in", grants[10] - start);
}

/// A rate that does not divide the minute into whole milliseconds is
/// still the rate (the interval was once rounded down to 8 ms for 7,000 a
/// minute: 7,500).
#[tokio::test]
async fn the_rate_is_exact_when_it_does_not_divide_the_minute() {
    let (_redis, store) = store().await;
    // 7,000 a minute with no burst: 8.64 ms apart (a minute and a half
    // second, 7,000 ways). Asked back to back, each run is reserved its own
    // moment: the 40th's is 39 intervals after the first permit.
    let limiter = store.limiter(config(7_000, 1, 1_000));
    let start = store.redis_now_ms().await.unwrap();
    assert!(limiter.acquire("x0").await.unwrap().outcome.is_ok());
    let mut moment = start;
    for n in 1..40 {
        let before = store.redis_now_ms().await.unwrap();
        let (wait, why) = limiter.acquire(&format!("x{n}")).await.unwrap().outcome.unwrap_err();
        assert_eq!(why, Denied::Rate);
        moment = before + wait.as_millis() as u64;
    }
    let spread = moment - start;
    assert!((335..=360).contains(&spread), "the 40th permit is reserved {spread} ms after the first (39 x 8.64 = 337)");
}

#[tokio::test]
async fn concurrency_is_bounded_by_leases_that_release_or_lapse() {
    let (_redis, store) = store().await;
    let limiter = store.limiter(config(60_000, 1_000, 2));
    assert!(limiter.acquire("a").await.unwrap().outcome.is_ok());
    let b_at = store.redis_now_ms().await.unwrap();
    assert!(limiter.acquire("b").await.unwrap().outcome.is_ok());
    assert!(limiter.acquire("a").await.unwrap().outcome.is_ok(), "re-asking for a held lease is not a new run");
    let (_, why) = limiter.acquire("c").await.unwrap().outcome.unwrap_err();
    assert_eq!(why, Denied::Concurrency);
    assert_eq!(limiter.held().await.unwrap(), 2);
    limiter.release("a").await.unwrap();
    assert!(limiter.acquire("c").await.unwrap().outcome.is_ok());
    // "b" belongs to a worker that died: its lease lapses after 400 ms;
    // "c" is renewed all along, so the slot "d" gets is b's.
    let d_at = granted(&store, &limiter, "d", Some("c")).await;
    assert!(d_at >= b_at + 400, "b lapsed {} ms after it was granted", d_at - b_at);
    let (_, why) = limiter.acquire("e").await.unwrap().outcome.unwrap_err();
    assert_eq!(why, Denied::Concurrency, "c was renewed");
}

#[tokio::test]
async fn a_pause_stops_every_caller_until_it_ends() {
    let (_redis, store) = store().await;
    let a = store.limiter(config(60_000, 1_000, 100));
    let b = store.limiter(config(60_000, 1_000, 100)); // another process
    let start = store.redis_now_ms().await.unwrap();
    a.pause_for(Duration::from_millis(600)).await.unwrap();
    a.pause_for(Duration::from_millis(100)).await.unwrap(); // an earlier end does not shorten it
    let (wait, why) = b.acquire("x").await.unwrap().outcome.unwrap_err();
    assert_eq!(why, Denied::Paused);
    assert!(wait > Duration::from_millis(100) && wait <= Duration::from_millis(600), "{wait:?}");
    let at = granted(&store, &b, "x", None).await;
    assert!(at >= start + 600, "the pause ended {} ms after it began", at - start);
}

#[tokio::test]
async fn a_release_wakes_the_run_that_waited_longest_and_a_run_keeps_its_place() {
    let (_redis, store) = store().await;
    let limiter = store.limiter(LimiterConfig { lease_ttl: Duration::from_secs(60), ..config(60_000, 100, 1) });
    assert!(limiter.acquire("holder").await.unwrap().outcome.is_ok());
    // Names sort in the order they wait: two waits in one millisecond are
    // ordered by name (run ids are time-ordered uuid v7s).
    for run in ["r1-first", "r2-second", "r1-first"] {
        assert!(limiter.acquire(run).await.unwrap().outcome.is_err(), "no slot");
        limiter.wait_for_slot(run).await.unwrap();
    }
    assert_eq!(limiter.waiting().await.unwrap(), 2, "waiting again keeps one place");
    assert_eq!(limiter.release("holder").await.unwrap().as_deref(), Some("r1-first"));
    assert!(limiter.acquire("r1-first").await.unwrap().outcome.is_ok(), "the woken run gets the slot");
    assert_eq!(limiter.release("r1-first").await.unwrap().as_deref(), Some("r2-second"));
    assert_eq!(limiter.release("nobody").await.unwrap(), None);
    assert_eq!(limiter.waiting().await.unwrap(), 0);
    // A waiter that got a slot another way (its safety net) leaves the set,
    // and a release by a run that held no slot wakes nobody.
    assert!(limiter.acquire("holder").await.unwrap().outcome.is_ok());
    limiter.wait_for_slot("r3-third").await.unwrap();
    limiter.wait_for_slot("r4-fourth").await.unwrap();
    assert_eq!(limiter.release("holder").await.unwrap().as_deref(), Some("r3-third"));
    assert!(limiter.acquire("r4-fourth").await.unwrap().outcome.is_ok(), "fourth takes the free slot itself");
    assert_eq!(limiter.waiting().await.unwrap(), 0, "fourth no longer waits");
    limiter.wait_for_slot("r5-fifth").await.unwrap();
    assert_eq!(limiter.release("r3-third").await.unwrap(), None, "third held no slot: nothing freed");
    assert_eq!(limiter.waiting().await.unwrap(), 1);
}

#[tokio::test]
async fn runs_told_to_wait_for_the_rate_each_get_a_moment_of_their_own_and_are_granted_then() {
    let (_redis, store) = store().await;
    let limiter = store.limiter(config(600, 1, 100)); // one each 100 ms, no burst
    assert!(limiter.acquire("r0").await.unwrap().outcome.is_ok());
    // Five runs told to wait: each gets its own moment, 100 ms apart (not
    // all the next token, for all but one to be told to wait again).
    let mut due = Vec::new();
    for n in 1..=5 {
        let (wait, why) = limiter.acquire(&format!("r{n}")).await.unwrap().outcome.unwrap_err();
        // Redis's time read after the answer: the moment computed from it
        // is never before the one the script reserved (read before, it
        // could be a millisecond early, and the run refused at it).
        let answered = store.redis_now_ms().await.unwrap();
        assert_eq!(why, Denied::Rate);
        due.push(answered + wait.as_millis() as u64);
    }
    for pair in due.windows(2) {
        let gap = pair[1] - pair[0];
        assert!((95..=105).contains(&gap), "reserved moments {due:?}");
    }
    // Asking early changes nothing: the same moment, no second token.
    let (wait, _) = limiter.acquire("r3").await.unwrap().outcome.unwrap_err();
    let now = store.redis_now_ms().await.unwrap();
    assert!(now + wait.as_millis() as u64 <= due[2] + 2, "r3 keeps its moment");
    // At its moment, each is granted on its first ask.
    for (n, at) in due.iter().enumerate() {
        wait_until("the reserved moment", PATIENCE, || async {
            (store.redis_now_ms().await.unwrap() >= *at).then_some(())
        })
        .await;
        assert!(limiter.acquire(&format!("r{}", n + 1)).await.unwrap().outcome.is_ok(), "r{} at its moment", n + 1);
    }
    // The tokens were taken by the reservations: a newcomer waits its turn.
    let (wait, why) = limiter.acquire("late").await.unwrap().outcome.unwrap_err();
    assert_eq!(why, Denied::Rate);
    assert!(wait <= Duration::from_millis(100), "{wait:?}");
}

#[tokio::test]
async fn slots_freed_by_a_dead_workers_lapsed_leases_wake_the_longest_waiters() {
    let (_redis, store) = store().await;
    let limiter = store.limiter(LimiterConfig { lease_ttl: Duration::from_millis(300), ..config(60_000, 100, 2) });
    for dead in ["dead-1", "dead-2"] {
        assert!(limiter.acquire(dead).await.unwrap().outcome.is_ok());
    }
    // Read after both grants: both leases lapse by this time plus their TTL
    // (read before, the second one could still live a few ms past it).
    let granted_at = store.redis_now_ms().await.unwrap();
    for run in ["r1-first", "r2-second"] {
        assert!(limiter.acquire(run).await.unwrap().outcome.is_err(), "no slot");
        limiter.wait_for_slot(run).await.unwrap();
    }
    // Nobody releases: the worker holding both died. Once its leases lapse,
    // the next caller takes one freed slot and wakes the longest waiter for
    // the other.
    wait_until("the dead worker's leases to lapse", PATIENCE, || async {
        (store.redis_now_ms().await.unwrap() > granted_at + 300).then_some(())
    })
    .await;
    let acquired = limiter.acquire("newcomer").await.unwrap();
    assert!(acquired.outcome.is_ok());
    assert_eq!(acquired.woken, vec!["r1-first".to_string()]);
    assert_eq!(limiter.waiting().await.unwrap(), 1, "r2 still waits: no slot is left for it");
}
