//! gcrun's worker: the submit, poll and webhook steps, and the process
//! that runs them.
//!
//! - [`step`]: the three steps as pure decisions, `decide(record,
//!   observation, policy, now) -> Decision`, with no Redis, HTTP or clock.
//! - [`interpret`]: the one interpreter. It drives a step's decisions over
//!   a [`Port`](interpret::Port), finding out what a decision needs and
//!   performing what it decided (the write first, then the pushes).
//!   [`Deps`] is the port of a worker process.
//! - [`local`]: a port with the record in memory, for `gcrun run-now`.
//! - [`definitions`]: the action-contract cache (process, Redis, Genesys).
//! - [`webhook`]: Standard Webhooks signing, the body, and [`deliver`](webhook::deliver).
//! - [`jobs`]: the apalis handlers of the three job payloads.
//! - [`runtime`]: the composition root, [`Worker::build`] and
//!   [`Worker::run`]: a supervised apalis worker per queue, the sweeper,
//!   the admin server (`/metrics`, `/healthz`, `/readyz`), shutdown.
//! - [`config`]: [`WorkerConfig`], the steps' policy: every limit with a
//!   default.
//! - [`metrics`]: the Prometheus registry and label tables.

pub mod config;
pub mod definitions;
pub mod durations;
pub mod egress;
pub mod finish;
pub mod interpret;
pub mod jobs;
pub mod local;
pub mod metrics;
pub mod runtime;
pub mod step;
pub mod webhook;

pub use config::WorkerConfig;
pub use interpret::{Deps, Outcome, StepError, now_ms};
pub use runtime::{BuildError, GenesysSettings, Readiness, RunSettings, Worker, WorkerSettings};
