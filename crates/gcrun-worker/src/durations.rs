//! When to look first: each action's (or flow's) runs' usual length, as
//! this process has seen them, so a run's first poll comes just after it
//! ends instead of at the schedule's first delay. A run holds its
//! concurrency slot until a poll sees its end, so a poll that comes a
//! second late wastes a second of the org's capacity (the slot-hold ratio
//! of issue #9).
//!
//! What a poll sees is only a bound: a run seen ended ended some time
//! before. Averaging the times the ends were seen would aim each first
//! poll later than the last (each one is late by the aim's own slack). So
//! the aim is tracked as a quantile instead. A first poll made near the
//! aim that finds the run ended lowers the aim a little; one that finds it
//! still going at `t` after its submission (so it takes longer than `t`)
//! raises the aim to rather more than `t`. The aim saws between a run's length and a little above it, and
//! about [`HIT_RATE`] of first polls find the end (a stochastic
//! approximation of that quantile of the runs' lengths). Each step is taken
//! from the time the poll was made, not from the aim as it is now: forty
//! runs in flight that all missed one aim raise it once, not forty times.
//!
//! Per process and in memory: a restarted worker starts from the schedule
//! again and learns within a few dozen runs. Bounded: at most
//! [`MAX_TARGETS`] actions are remembered (the least recently seen goes).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Actions remembered at most.
pub const MAX_TARGETS: usize = 1_000;
/// The share of first polls meant to find the run ended.
pub const HIT_RATE: f64 = 0.95;
/// How far one first poll moves the aim.
const STEP: f64 = 0.1;
/// The aim never goes below this (ms): the schedule's floor binds anyway.
const LEAST_MS: f64 = 100.0;

/// What a run's first poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstPoll {
    /// The run had ended, this long after it was submitted (an upper bound
    /// of its length).
    Ended { after_ms: u64 },
    /// The run was still going this long after it was submitted (a lower
    /// bound of its length).
    GoingOn { after_ms: u64 },
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
            (Some((aim, seen)), FirstPoll::Ended { after_ms }) => {
                // A poll made near the aim (it comes a little after: the
                // spread, the fetch) says the aim was late enough; one made
                // much later (aimed before the aim rose) says nothing of it.
                if after_ms as f64 <= *aim * 1.25 {
                    *aim = (*aim * (1.0 - STEP * (1.0 - HIT_RATE))).max(LEAST_MS);
                }
                *seen = tick;
            }
            (Some((aim, seen)), FirstPoll::GoingOn { after_ms }) => {
                *aim = aim.max(after_ms as f64 * (1.0 + STEP * HIT_RATE));
                *seen = tick;
            }
            // The first end seen starts the aim: too late, so it comes down.
            (None, FirstPoll::Ended { after_ms }) => {
                if aims.len() >= MAX_TARGETS
                    && let Some(oldest) = aims.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone())
                {
                    aims.remove(&oldest);
                }
                aims.insert(target.to_string(), ((after_ms as f64).max(LEAST_MS), tick));
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

    #[test]
    fn the_aim_settles_just_past_runs_of_one_length_from_a_late_start() {
        let d = Durations::new();
        assert_eq!(d.aim("a"), None);
        d.first_poll("a", FirstPoll::GoingOn { after_ms: 1_000 });
        assert_eq!(d.aim("a"), None, "nothing to start from");
        // Runs of 1,500 ms; the first end was seen at 2,300 ms.
        d.first_poll("a", FirstPoll::Ended { after_ms: 2_300 });
        let mut hits = 0;
        for _ in 0..300 {
            let aim = d.aim("a").unwrap();
            let found =
                if aim >= 1_500 { FirstPoll::Ended { after_ms: aim } } else { FirstPoll::GoingOn { after_ms: aim } };
            hits += usize::from(matches!(found, FirstPoll::Ended { .. }));
            d.first_poll("a", found);
        }
        let aim = d.aim("a").unwrap();
        assert!((1_450..=1_800).contains(&aim), "{aim}");
        assert!(hits > 240, "most first polls find the end: {hits} of 300");
    }

    #[test]
    fn many_misses_of_one_aim_raise_it_once() {
        let d = Durations::new();
        d.first_poll("a", FirstPoll::Ended { after_ms: 1_000 });
        let aim = d.aim("a").unwrap();
        for _ in 0..40 {
            d.first_poll("a", FirstPoll::GoingOn { after_ms: aim });
        }
        let raised = d.aim("a").unwrap();
        assert!(raised > aim && raised < aim * 2, "{aim} -> {raised}");
    }

    #[test]
    fn the_memory_is_bounded() {
        let d = Durations::new();
        d.first_poll("a", FirstPoll::Ended { after_ms: 1_000 });
        for i in 0..MAX_TARGETS + 5 {
            d.first_poll(&format!("t{i}"), FirstPoll::Ended { after_ms: 10 });
        }
        assert_eq!(d.aims.lock().unwrap().len(), MAX_TARGETS);
        assert_eq!(d.aim("a"), None, "the least recently seen went first");
    }
}
