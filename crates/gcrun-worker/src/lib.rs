//! gcrun's worker: apalis workers for the submit, poll and webhook queues.
//!
//! - [`config`]: [`WorkerConfig`], every limit with a default.
//! - [`handlers`]: the three steps as plain functions returning a
//!   [`Step`] (follow-up jobs or abort), driven by tests without a queue.
//! - [`webhook`]: Standard Webhooks signing and the webhook body.
//! - [`metrics`]: the Prometheus metrics.

pub mod config;
pub mod handlers;
pub mod metrics;
pub mod webhook;

pub use config::WorkerConfig;
pub use handlers::{Ctx, FollowUp, Step};
pub mod jobs;
pub mod runtime;

pub use jobs::{PushError, QueueNames, QueueSettings, Queues};
pub use runtime::{Readiness, RunSettings, run_workers, serve_admin};
