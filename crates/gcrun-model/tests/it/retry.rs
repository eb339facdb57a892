use std::time::Duration;

use gcrun_model::{Jitter, RetrySchedule};

fn schedule() -> RetrySchedule {
    RetrySchedule { base: Duration::from_secs(1), cap: Duration::from_secs(30), floor: Duration::from_millis(200) }
}

#[test]
fn the_ceiling_doubles_then_stops_at_the_cap() {
    let s = schedule();
    let got: Vec<u64> = (0..8).map(|n| s.ceiling(n).as_secs()).collect();
    assert_eq!(got, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    assert_eq!(s.ceiling(u32::MAX), Duration::from_secs(30), "huge attempts must not overflow");
}

#[test]
fn every_delay_lies_between_floor_and_ceiling() {
    let s = schedule();
    let mut j = Jitter::seeded(7);
    for attempt in 0..40 {
        for _ in 0..200 {
            let d = s.delay(attempt, &mut j);
            assert!(d >= s.floor && d <= s.ceiling(attempt), "attempt {attempt}: {d:?}");
        }
    }
}

#[test]
fn jitter_spreads_over_the_whole_range() {
    let s = schedule();
    let mut j = Jitter::seeded(11);
    let draws: Vec<Duration> = (0..2_000).map(|_| s.delay(5, &mut j)).collect();
    let (lo, hi) = (draws.iter().min().unwrap(), draws.iter().max().unwrap());
    // Full jitter over [0.2 s, 30 s]: 2,000 draws reach both ends' tenths.
    assert!(*lo < Duration::from_secs(3), "{lo:?}");
    assert!(*hi > Duration::from_secs(27), "{hi:?}");
    let mean = draws.iter().map(|d| d.as_secs_f64()).sum::<f64>() / draws.len() as f64;
    assert!((13.0..17.2).contains(&mean), "mean {mean}");
}

#[test]
fn the_same_seed_gives_the_same_delays() {
    let s = schedule();
    let a: Vec<_> = {
        let mut j = Jitter::seeded(3);
        (0..10).map(|n| s.delay(n, &mut j)).collect()
    };
    let b: Vec<_> = {
        let mut j = Jitter::seeded(3);
        (0..10).map(|n| s.delay(n, &mut j)).collect()
    };
    let c: Vec<_> = {
        let mut j = Jitter::seeded(4);
        (0..10).map(|n| s.delay(n, &mut j)).collect()
    };
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn retry_after_wins_when_it_asks_for_more() {
    let s = schedule();
    let mut j = Jitter::seeded(1);
    let d = s.delay_after(0, Some(Duration::from_secs(120)), &mut j);
    assert!(d >= Duration::from_secs(120) && d <= Duration::from_secs(120) + s.ceiling(0), "{d:?}");
    let d = s.delay_after(4, Some(Duration::from_millis(1)), &mut j);
    assert!(d >= s.floor && d <= s.ceiling(4));
    let d = s.delay_after(2, None, &mut j);
    assert!(d <= s.ceiling(2));
}

#[test]
fn clients_told_the_same_retry_after_do_not_return_in_lockstep() {
    let s = schedule();
    let mut j = Jitter::seeded(3);
    let server = Some(Duration::from_secs(5));
    let delays: std::collections::BTreeSet<Duration> = (0..50).map(|_| s.delay_after(0, server, &mut j)).collect();
    assert!(delays.len() > 10, "the server's wait is spread, not copied: {delays:?}");
    let (min, max) = (*delays.first().unwrap(), *delays.last().unwrap());
    assert!(min >= Duration::from_secs(5) && max <= Duration::from_millis(5_500), "{min:?}..{max:?}");
}

#[test]
fn a_floor_above_the_ceiling_is_clamped() {
    let s =
        RetrySchedule { base: Duration::from_millis(100), cap: Duration::from_secs(1), floor: Duration::from_secs(5) };
    let mut j = Jitter::seeded(2);
    assert_eq!(s.delay(0, &mut j), Duration::from_millis(100));
}

#[test]
fn schedules_deserialize_from_milliseconds_with_defaults() {
    let s: RetrySchedule = serde_json::from_str(r#"{"base": 250}"#).unwrap();
    assert_eq!(s.base, Duration::from_millis(250));
    assert_eq!(s.cap, RetrySchedule::default().cap);
    assert!(serde_json::from_str::<RetrySchedule>(r#"{"bse": 1}"#).is_err(), "typos are errors");
}
