//! gcrun's queues, as producers and workers both see them.
//!
//! - [`job`]: the payloads (ids only: the truth is the run record) and
//!   [`Job`], a job to push with its delay, which owns the job-id scheme.
//! - [`queues`]: [`Queues`], the three hash-tagged queues
//!   (`{gcrun:submit}`, `{gcrun:poll}`, `{gcrun:webhook}`), and pushing.
//! - [`backend`]: [`EngineBackend`](backend::EngineBackend), the apalis
//!   backend over the engine, and its ack layer.
//! - [`engine`]: the queue engine's storage (gcrun's own Lua, bounded
//!   work per call, millisecond schedules, per-job leases, ack with
//!   successors in one script); the workers do not run on it yet.
//! - [`depth`]: what each queue holds (ready, scheduled, in flight, done,
//!   dead), its dead jobs, and retention of finished ones.
//!
//! Today the storage under the queues is apalis-redis 1.0; this crate is
//! where gcrun's own engine replaces it (see ARCHITECTURE.md). Nothing here
//! knows the worker: enqueueing needs no HTTP client, no metrics and no
//! apalis runtime.

pub mod backend;
pub mod depth;
pub mod engine;
pub mod job;
pub mod queues;

pub use depth::{DeadJob, QueueDepth};
pub use job::{Job, PollJob, SubmitJob, WebhookJob};
pub use queues::{PushError, QueueNames, QueueSettings, Queues};
