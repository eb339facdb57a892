//! The run and webhook state machines.
//!
//! ```text
//! accepted ─► validated ─► submitted ─► queued ─► running ─► completed
//!    │            │            │           │          ├────► failed
//!    │            │            │           │          └────► timed_out
//!    ├─► rejected │            └───────────┴─► (any terminal, for sync
//!    └─► dead ◄───┴── (gave up)                flavors and fast runs)
//! ```
//!
//! Any run that has not ended can become `cancelled` (an operator or its
//! upstream asked; a call already made to Genesys is not undone).
//!
//! `rejected` means invalid input, never submitted. `dead` means gcrun gave
//! up (retries exhausted, unusable data). Both sit in the dead-letter set,
//! and an operator's requeue takes them back to `accepted`: the only way out
//! of a terminal state, and one no handler takes on its own.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Accepted,
    Validated,
    Submitted,
    Queued,
    Running,
    Completed,
    Failed,
    TimedOut,
    Rejected,
    Dead,
    /// Stopped on request before it ended; gcrun neither submits nor
    /// polls it any more.
    Cancelled,
}

/// A transition the state machine does not allow. Handlers treat it as a
/// bug (or a stale, re-delivered job), never as a reason to panic.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("illegal run transition {from} -> {to}")]
pub struct IllegalTransition {
    pub from: RunStatus,
    pub to: RunStatus,
}

impl RunStatus {
    pub const ALL: [RunStatus; 11] = [
        RunStatus::Accepted,
        RunStatus::Validated,
        RunStatus::Submitted,
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::TimedOut,
        RunStatus::Rejected,
        RunStatus::Dead,
        RunStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Accepted => "accepted",
            RunStatus::Validated => "validated",
            RunStatus::Submitted => "submitted",
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Rejected => "rejected",
            RunStatus::Dead => "dead",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// No handler moves a run out of a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed
                | RunStatus::Failed
                | RunStatus::TimedOut
                | RunStatus::Rejected
                | RunStatus::Dead
                | RunStatus::Cancelled
        )
    }

    /// Terminal states that land in the dead-letter set.
    pub fn is_dead_lettered(self) -> bool {
        matches!(self, RunStatus::Rejected | RunStatus::Dead)
    }

    /// Whether the run's remote side finished successfully.
    pub fn is_success(self) -> bool {
        self == RunStatus::Completed
    }

    /// Whether a handler may move a run from `self` to `next`.
    pub fn can_become(self, next: RunStatus) -> bool {
        use RunStatus::*;
        // A cancel that was asked for ends any run that has not ended.
        if next == Cancelled {
            return !self.is_terminal();
        }
        match self {
            Accepted => matches!(next, Validated | Rejected | Dead),
            // A fatal submit error (404, 403, Genesys's own 400) fails the
            // run without a remote id; a run deadline can pass while it
            // waits for a limiter permit.
            Validated => matches!(next, Submitted | Failed | TimedOut | Dead),
            // Synchronous flavors and fast runs skip intermediate states.
            Submitted => matches!(next, Queued | Running | Completed | Failed | TimedOut | Dead),
            Queued => matches!(next, Running | Completed | Failed | TimedOut | Dead),
            Running => matches!(next, Completed | Failed | TimedOut | Dead),
            Completed | Failed | TimedOut | Rejected | Dead | Cancelled => false,
        }
    }

    /// `Ok(next)` when the transition is legal.
    pub fn transition(self, next: RunStatus) -> Result<RunStatus, IllegalTransition> {
        if self.can_become(next) { Ok(next) } else { Err(IllegalTransition { from: self, to: next }) }
    }

    /// An operator's requeue from the dead-letter set: `rejected` or `dead`
    /// back to `accepted`. Kept apart from [`can_become`](Self::can_become)
    /// so no handler takes it by accident.
    pub fn requeue(self) -> Result<RunStatus, IllegalTransition> {
        if self.is_dead_lettered() {
            Ok(RunStatus::Accepted)
        } else {
            Err(IllegalTransition { from: self, to: RunStatus::Accepted })
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| format!("unknown run status `{s}`"))
    }
}

/// One recorded step of a run's life: the audit trail is a list of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub from: Option<RunStatus>,
    pub to: RunStatus,
    /// Unix time in milliseconds, supplied by the caller (the model reads
    /// no clock).
    pub at_ms: u64,
    /// Why: `submitted as <remote id>`, `poll: RUNNING`, the violation list,
    /// the last error with its correlation id.
    pub cause: String,
}

/// Delivery state of a run's completion webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookStatus {
    Pending,
    Delivered,
    Dead,
}

impl WebhookStatus {
    /// `pending → delivered | dead`; a retry stays `pending`, and an
    /// operator's requeue takes `dead` back to `pending`.
    pub fn can_become(self, next: WebhookStatus) -> bool {
        use WebhookStatus::*;
        matches!((self, next), (Pending, Delivered) | (Pending, Dead) | (Dead, Pending))
    }
}
