//! gcrun-model's tests: every validation rule with the exact violations it
//! reports, the retry schedule's bounds and jitter, and every legal and
//! illegal lifecycle transition.
#![allow(clippy::unwrap_used)]

mod lifecycle;
mod request;
mod retry;
mod schema;
