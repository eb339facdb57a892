//! The Genesys Cloud client gcrun's workers use. It knows HTTP, not Redis.
//!
//! - [`region`]: the 18 regions, and [`Environment::parse`] which accepts a
//!   region code, a domain or a base URL (how the emulator is reached).
//! - [`auth`]: OAuth client credentials and the shared, single-flight token
//!   cache ([`TokenCache`]).
//! - [`error`]: [`ApiError`], the one error type: status, parsed
//!   [`ErrorBody`], correlation id, rate-limit headers, and an
//!   [`ErrorClass`](gcrun_model::ErrorClass) saying whether to retry, and
//!   its [`Verdict`]: what the failure means for the caller.
//! - [`types`]: the API's JSON shapes (actions, contracts, runs, flow
//!   executions), as `reference/genesys-cloud.md` gives them.
//! - [`client`]: [`GenesysClient`], every call gcrun makes.
//! - [`flavor`]: [`RunApi`], one trait over the three flavors (`runs`,
//!   `execute`, `workflow`), so the pipeline does not care which it drives.

pub mod auth;
pub mod client;
pub mod error;
pub mod flavor;
pub mod region;
pub mod types;

pub use auth::{Credentials, TokenCache};
pub use client::{ClientConfig, GenesysClient};
pub use error::{ApiError, ApiErrorDetails, ApiErrorKind, ErrorBody, RateLimit, Verdict};
pub use flavor::{RemotePhase, RemoteRun, RunApi, SubmitRequest};
pub use gcrun_secrets::SecretSource;
pub use region::{Environment, Region, RegionError};
