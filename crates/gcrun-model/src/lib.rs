//! gcrun's domain model: what a run *is*, independent of how it is stored or
//! sent. This crate does no I/O: no network, no Redis, no tokio, no clock
//! reads (times are passed in), so every rule here is testable in isolation.
//!
//! - [`request`]: the run request an upstream system sends, and
//!   [`RunRequest::parse`] which reports *every* problem at once.
//! - [`rules`]: Genesys's data-action contract rules and the spec's size
//!   limits, as configurable checks ([`RequestLimits`]).
//! - [`schema`]: validation of inputs against an action's JSON-Schema
//!   input contract ([`InputSchema`]).
//! - [`violation`]: the one shape every rejection uses ([`Violation`]).
//! - [`retry`]: the durable retry schedule `delay(attempt)` and
//!   [`ErrorClass`], the retryable/fatal split every failure carries.
//! - [`lifecycle`]: the run and webhook state machines and their legal
//!   transitions.
//! - [`outcome`]: [`RunError`], why a run did not succeed.
//! - [`ids`]: [`RunId`] (UUID v7), [`Flavor`].

pub mod egress;
pub mod ids;
pub mod lifecycle;
pub mod outcome;
pub mod request;
pub mod retry;
pub mod rules;
pub mod schema;
pub mod serde_millis;
pub mod tenant;
pub mod timestamp;
pub mod violation;

pub use ids::{Flavor, RunId};
pub use lifecycle::{IllegalTransition, RunStatus, Transition, WebhookStatus};
pub use outcome::RunError;
pub use request::{RunRequest, RunRequestBuilder, RunRequestDoc, Target};
pub use retry::{ErrorClass, Jitter, RetrySchedule};
pub use rules::RequestLimits;
pub use schema::{InputSchema, SchemaError};
pub use tenant::{BadTenant, Tenant};
pub use violation::{Violation, Violations};
