//! gcrun-worker's own tests: the decision table of every step (no Redis,
//! no emulator, no clock), webhook signing against the Standard Webhooks
//! example, the webhook body and delivery. The interpreter and the runtime
//! are exercised end to end, with real queues and processes, in `tests/`.
#![allow(clippy::unwrap_used)]

mod finish;
mod steps;
mod webhook;
