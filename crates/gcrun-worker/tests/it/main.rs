//! gcrun-worker's own tests: webhook signing against the Standard Webhooks
//! example, and the webhook body. The handlers and the runtime are
//! exercised end to end, with real queues and processes, in `tests/`.
#![allow(clippy::unwrap_used)]

mod webhook;
