//! gcrun-queue against a private redis-server: the engine's scripts.
#![allow(clippy::unwrap_used)]

mod backend;
mod crash;
mod engine;
