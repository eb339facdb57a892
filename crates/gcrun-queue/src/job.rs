//! Job payloads and the job-id scheme.
//!
//! Payloads carry only ids: the truth lives in the run record, so a job
//! re-delivered after a crash reads the current state, never a stale copy.
//! The run id is a string so that a malformed one is dead-lettered with a
//! reason instead of failing to decode.
//!
//! Payloads are versioned (`v`, [`PAYLOAD_VERSION`]) so that a rolling
//! deploy mixing two releases loses nothing: a worker reads the previous
//! version (a payload without `v` is version 0, the format before versions,
//! and reads the same), and gives a payload from a newer release back to
//! the queue for a newer worker instead of dead-lettering it.

use std::time::Duration;

use gcrun_model::RunId;
use serde::{Deserialize, Serialize};

/// The payload version this release writes.
pub const PAYLOAD_VERSION: u32 = 1;

fn current() -> u32 {
    PAYLOAD_VERSION
}

/// The version field alone, read before a payload is decoded.
#[derive(Debug, Deserialize)]
pub struct PayloadVersion {
    #[serde(default)]
    pub v: u32,
}

/// Start (or resume) a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitJob {
    #[serde(default = "current")]
    pub v: u32,
    pub run: String,
}

/// Poll a submitted run; `attempt` drives the backoff and deduplication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollJob {
    #[serde(default = "current")]
    pub v: u32,
    pub run: String,
    #[serde(default)]
    pub attempt: u32,
}

/// Deliver a run's completion webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookJob {
    #[serde(default = "current")]
    pub v: u32,
    pub run: String,
    #[serde(default)]
    pub attempt: u32,
}

/// A job to push, and how long from now it is due.
///
/// Poll and webhook jobs have deterministic ids ([`Job::id`]): a step can
/// be pushed again after a crash or a failed push without ever making a
/// second copy, because the queue ignores a push whose id it already
/// holds. `generation` tells a requeued run's chain from the previous one:
/// the run's deadline for polls (a requeue sets a new one), and the time
/// the run ended plus the webhook's requeue epoch for webhooks. Submit jobs
/// get fresh ids: a submit may be pushed many times (sweeper, requeue,
/// limiter waits), and every copy finds out from the record what is left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Submit { run: RunId, after: Duration },
    Poll { run: RunId, generation: u64, attempt: u32, after: Duration },
    Webhook { run: RunId, generation: u64, attempt: u32, after: Duration },
}

impl Job {
    /// The deterministic job id, or `None` for a fresh one.
    pub fn id(&self) -> Option<String> {
        match self {
            Job::Submit { .. } => None,
            Job::Poll { run, generation, attempt, .. } => Some(format!("p:{run}:{generation}:{attempt}")),
            Job::Webhook { run, generation, attempt, .. } => Some(format!("w:{run}:{generation}:{attempt}")),
        }
    }

    pub fn run(&self) -> RunId {
        match self {
            Job::Submit { run, .. } | Job::Poll { run, .. } | Job::Webhook { run, .. } => *run,
        }
    }

    pub fn after(&self) -> Duration {
        match self {
            Job::Submit { after, .. } | Job::Poll { after, .. } | Job::Webhook { after, .. } => *after,
        }
    }
}
