//! A Genesys Cloud emulator, faithful to `reference/genesys-cloud.md`, for
//! gcrun's demo and tests and for users testing their own setups offline.
//!
//! - [`config`]: what it serves and how it misbehaves ([`EmulatorConfig`],
//!   [`Timings`], [`Limits`], [`Faults`]).
//! - [`fixtures`]: action definitions, flows and OAuth clients, and the
//!   shipped demo set ([`Fixtures::demo`]).
//! - [`directives`]: `emulator:` input values that ask for an outcome.
//! - [`state`]: tokens, runs, admission (rate and concurrency), faults and
//!   [`Stats`].
//! - [`http`]: the router, its middleware (correlation id, ErrorBody for
//!   every error, faults, bearer auth), the ErrorBody helpers with the
//!   correlation-id extractor, and a module per area: OAuth, actions and
//!   `execute`, `runs`, flows, and the admin API under `/emulator/`.
//!
//! [`serve`] takes its listener and a shutdown future from the caller, so a
//! test binds port 0 and stops the server when it likes.

pub mod config;
pub mod directives;
pub mod fixtures;
pub mod http;
pub mod state;

use std::future::Future;

pub use config::{EmulatorConfig, Faults, Limits, Timings};
pub use fixtures::Fixtures;
pub use state::{Emulator, Stats};

/// Serves `emulator` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    emulator: Emulator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, http::router(emulator)).with_graceful_shutdown(shutdown).await
}
