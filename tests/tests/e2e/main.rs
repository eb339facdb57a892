//! End-to-end suites: real Redis, the emulator over HTTP, real worker
//! processes where a test needs to stop or kill one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backlog;
mod bad_input;
mod cancel;
mod crash;
mod dashboard;
mod deploy;
mod hardening;
mod hold;
mod ingest;
mod limiter;
mod malformed;
mod operator;
mod ops_cli;
mod outage;
mod pause;
mod pipeline;
mod redelivery;
mod restart;
mod rotation;
mod secrets;
mod secure;
mod soak;
mod storm;
mod tenants;
mod topology;
mod unknown;
mod upgrade;
