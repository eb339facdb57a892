//! Depths of the apalis queues, computed from their keys (apalis-redis has
//! no depth gauges), and retention of their `done`/`dead` sets.

use serde::Serialize;

/// How many jobs a queue holds in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueDepth {
    pub ready: u64,
    pub scheduled: u64,
    pub in_flight: u64,
    pub done: u64,
    pub dead: u64,
}
