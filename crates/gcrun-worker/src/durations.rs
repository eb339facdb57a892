//! When to look first: each action's (or flow's) runs' usual length, as
//! this process has seen them, so a run's first poll comes just after it
//! ends instead of at the schedule's first delay. A run holds its
//! concurrency slot until a poll sees its end, so a poll that comes a
//! second late wastes a second of the org's capacity (the slot-hold ratio
//! of issue #9).
//!
//! What a poll sees is only a bound: a run seen ended ended some time
//! before. Averaging the times the ends were seen would aim each first
//! poll later than the last (each one is late by the aim's own slack: tried,
//! and the aim ran away). So each first poll tells only whether its aim was
//! late enough, and the aim moves from the aim that poll was given (stored
//! with the run when it was submitted), not from the aim as it is now: a
//! first poll that finds the run ended lowers the aim to 2 % under its
//! own, one that finds it going on raises the aim to 10 % over its own.
//! Forty runs in flight polled at one aim move it once, not forty times;
//! the aim saws between a run's length and a tenth above it. A miss costs
//! little (the second poll comes a tenth of the aim later), so the first
//! aim, from the first end the schedule saw (late by up to a poll
//! interval), starts at three quarters of it.
//!
//! Per process and in memory: a restarted worker starts from the schedule
//! again and learns within a few dozen runs. Bounded: at most
//! [`MAX_TARGETS`] actions are remembered (the least recently seen goes).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Actions remembered at most.
pub const MAX_TARGETS: usize = 1_000;
/// An aim that was late enough comes down this much under it.
const DOWN: f64 = 0.02;
/// An aim that was too early goes up this much over it.
const UP: f64 = 0.10;
/// The aim never goes below this (ms): the schedule's floor binds anyway.
const LEAST_MS: f64 = 100.0;

/// What a run's first poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstPoll {
    /// The run had ended, this long after it was submitted (an upper bound
    /// of its length); `aimed`: the aim the poll was given, if any.
    Ended { after_ms: u64, aimed: Option<u64> },
    /// The run was still going this long after it was submitted (a lower
    /// bound of its length).
    GoingOn { after_ms: u64, aimed: Option<u64> },
}

#[derive(Debug, Default)]
pub struct Durations {
    aims: Mutex<HashMap<String, (f64, u64)>>,
    tick: AtomicU64,
}

impl Durations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Learns from the first poll of a run of `target`.
    pub fn first_poll(&self, target: &str, found: FirstPoll) {
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        let mut aims = self.aims.lock().unwrap_or_else(|p| p.into_inner());
        match (aims.get_mut(target), found) {
            (Some((aim, seen)), FirstPoll::Ended { after_ms, aimed }) => {
                // Aimed: that aim was late enough. Not aimed (the schedule's
                // poll): the run took at most `after_ms`.
                let bound = aimed.map_or(after_ms as f64, |a| a as f64 * (1.0 - DOWN));
                *aim = aim.min(bound).max(LEAST_MS);
                *seen = tick;
            }
            (Some((aim, seen)), FirstPoll::GoingOn { after_ms, aimed }) => {
                *aim = aim.max(aimed.unwrap_or(after_ms) as f64 * (1.0 + UP));
                *seen = tick;
            }
            // The first end seen starts the aim: too late, so it comes down.
            (None, FirstPoll::Ended { after_ms, .. }) => {
                if aims.len() >= MAX_TARGETS
                    && let Some(oldest) = aims.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone())
                {
                    aims.remove(&oldest);
                }
                aims.insert(target.to_string(), ((after_ms as f64 * 0.75).max(LEAST_MS), tick));
            }
            (None, FirstPoll::GoingOn { .. }) => {}
        }
    }

    /// When to poll a run of `target` first, in ms after its submission
    /// (none seen yet: `None`).
    pub fn aim(&self, target: &str) -> Option<u64> {
        let aims = self.aims.lock().unwrap_or_else(|p| p.into_inner());
        aims.get(target).map(|(ms, _)| ms.round() as u64)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Polls runs of `len` ms at the aim, `batch` at a time (each batch
    /// given the aim as it was when it started); the hits.
    fn settle(d: &Durations, len: u64, rounds: usize, batch: usize) -> usize {
        let mut hits = 0;
        for _ in 0..rounds {
            let aimed = d.aim("a").unwrap();
            for _ in 0..batch {
                let found = if aimed >= len {
                    hits += 1;
                    FirstPoll::Ended { after_ms: aimed + 20, aimed: Some(aimed) }
                } else {
                    FirstPoll::GoingOn { after_ms: aimed + 20, aimed: Some(aimed) }
                };
                d.first_poll("a", found);
            }
        }
        hits
    }

    #[test]
    fn the_aim_settles_just_past_runs_of_one_length_from_a_late_start() {
        let d = Durations::new();
        d.first_poll("a", FirstPoll::GoingOn { after_ms: 1_000, aimed: None });
        assert_eq!(d.aim("a"), None, "nothing to start from");
        // Runs of 1,500 ms; the schedule saw the first end at 2,600 ms.
        d.first_poll("a", FirstPoll::Ended { after_ms: 2_600, aimed: None });
        assert_eq!(d.aim("a"), Some(1_950));
        let hits = settle(&d, 1_500, 60, 1);
        let aim = d.aim("a").unwrap();
        assert!((1_500..=1_700).contains(&aim), "{aim}");
        assert!(hits > 40, "most first polls find the end: {hits} of 60");
    }

    #[test]
    fn forty_polls_at_one_aim_move_it_once() {
        let (one, forty) = (Durations::new(), Durations::new());
        for d in [&one, &forty] {
            d.first_poll("a", FirstPoll::Ended { after_ms: 2_000, aimed: None });
        }
        settle(&one, 1_000, 3, 1);
        settle(&forty, 1_000, 3, 40);
        assert_eq!(one.aim("a"), forty.aim("a"), "hits");
        settle(&one, 5_000, 2, 1);
        settle(&forty, 5_000, 2, 40);
        assert_eq!(one.aim("a"), forty.aim("a"), "misses");
    }

    #[test]
    fn the_memory_is_bounded() {
        let d = Durations::new();
        d.first_poll("a", FirstPoll::Ended { after_ms: 1_000, aimed: None });
        for i in 0..MAX_TARGETS + 5 {
            d.first_poll(&format!("t{i}"), FirstPoll::Ended { after_ms: 10, aimed: None });
        }
        assert_eq!(d.aims.lock().unwrap().len(), MAX_TARGETS);
        assert_eq!(d.aim("a"), None, "the least recently seen went first");
    }
}
