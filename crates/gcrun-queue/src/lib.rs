//! gcrun's queues, as producers and workers both see them.
//!
//! - [`job`]: the payloads (ids only: the truth is the run record) and
//!   [`Job`], a job to push with its delay, which owns the job-id scheme.
//! - [`queues`]: [`Queues`], the three hash-tagged queues
//!   (`{gcrun:submit}`, `{gcrun:poll}`, `{gcrun:webhook}`), and pushing.
//! - [`depth`]: what each queue holds (ready, scheduled, in flight, done,
//!   dead), its dead jobs, and retention of finished ones.
//!
//! Today the storage under the queues is apalis-redis 1.0; this crate is
//! where gcrun's own engine replaces it (see ARCHITECTURE.md). Nothing here
//! knows the worker: enqueueing needs no HTTP client, no metrics and no
//! apalis runtime.

pub mod depth;
pub mod job;
pub mod queues;

pub use depth::{DeadJob, QueueDepth};
pub use job::{Job, PollJob, SubmitJob, WebhookJob};
pub use queues::{PushError, QueueNames, QueueSettings, Queues};
