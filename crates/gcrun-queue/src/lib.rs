//! gcrun's queues, as producers and workers both see them.
//!
//! - [`job`]: the payloads (ids only: the truth is the run record) and
//!   [`Job`], a job to push with its delay, which owns the job-id scheme.
//! - [`queues`]: [`Queues`], the three queues (`submit`, `poll`,
//!   `webhook`): pushing, depths, dead jobs and retention.
//! - [`backend`]: [`EngineBackend`](backend::EngineBackend), the apalis
//!   backend over the engine, and its ack layer.
//! - [`engine`]: the queue engine's storage (gcrun's own Lua, bounded
//!   work per call, millisecond schedules, per-job leases, ack with
//!   successors in one script).
//!
//! apalis stays the worker runtime; this crate is the storage under it (it
//! replaced apalis-redis 1.0, which wedged past ~8,000 due jobs). Nothing
//! here knows the worker: enqueueing needs no HTTP client, no metrics and
//! no apalis runtime (only apalis-core's backend trait).

pub mod backend;
pub mod engine;
pub mod job;
pub mod queues;

pub use backend::JobHandle;
pub use engine::{DeadEntry, Lease, Queue, ScriptCall};
pub use job::{Job, PAYLOAD_VERSION, PollJob, SubmitJob, WebhookJob};
pub use queues::{PushError, QueueDepth, QueueNames, QueueSettings, Queues};
