//! A webhook receiver on `127.0.0.1:0`: checks every signature, refuses
//! on purpose when told to (to exercise retries), and logs what it took.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

/// Checks `(webhook-id, webhook-timestamp, body, webhook-signature)`. A
/// closure, so this crate needs no signing code of its own: callers pass
/// the worker's verifier.
pub type Verify = Arc<dyn Fn(&str, u64, &[u8], &str) -> bool + Send + Sync>;

/// When the sink refuses (503) a correctly signed delivery on purpose.
#[derive(Debug, Clone, Copy, Default)]
pub struct SinkRules {
    /// Everything for this long after the sink starts.
    pub refuse_during: Duration,
    /// The first attempt of one event in this many (by a hash of its id;
    /// 0: none).
    pub refuse_first_attempt_one_in: u32,
}

/// One delivery the sink accepted.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub body: Value,
}

/// What the sink saw.
#[derive(Debug, Default)]
pub struct SinkLog {
    pub accepted: Vec<Delivery>,
    /// Correctly signed deliveries refused on purpose.
    pub refused: u64,
    pub bad_signatures: u64,
    /// Refuse this many deliveries next (tests set it at run time).
    pub refuse_first: u64,
    /// Attempts seen per event id.
    pub attempts: HashMap<String, u32>,
}

impl SinkLog {
    /// Distinct events accepted.
    pub fn unique_events(&self) -> usize {
        let mut ids: Vec<&str> = self.accepted.iter().map(|d| d.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    /// Accepted deliveries of an event already accepted before.
    pub fn duplicates(&self) -> usize {
        self.accepted.len() - self.unique_events()
    }
}

#[derive(Clone)]
struct Sink {
    verify: Verify,
    rules: SinkRules,
    started: Instant,
    log: Arc<Mutex<SinkLog>>,
}

/// A running sink; stopped when dropped.
pub struct WebhookSink {
    /// `http://127.0.0.1:<port>/hooks`.
    pub url: String,
    pub log: Arc<Mutex<SinkLog>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink").field("url", &self.url).finish_non_exhaustive()
    }
}

impl WebhookSink {
    /// Starts a sink in the current tokio runtime.
    pub async fn start(verify: Verify, rules: SinkRules) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hooks", listener.local_addr()?);
        let log = Arc::new(Mutex::new(SinkLog::default()));
        let app = axum::Router::new().route("/hooks", axum::routing::post(receive)).with_state(Sink {
            verify,
            rules,
            started: Instant::now(),
            log: log.clone(),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self { url, log, _stop: tx })
    }

    /// A snapshot of the log, under its lock.
    pub fn with_log<T>(&self, f: impl FnOnce(&mut SinkLog) -> T) -> T {
        f(&mut self.log.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

async fn receive(State(s): State<Sink>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let id = h("webhook-id");
    let mut log = s.log.lock().unwrap_or_else(|p| p.into_inner());
    let Ok(ts) = h("webhook-timestamp").parse::<u64>() else {
        log.bad_signatures += 1;
        return StatusCode::BAD_REQUEST;
    };
    if !(s.verify)(&id, ts, &body, &h("webhook-signature")) {
        log.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let attempt = {
        let n = log.attempts.entry(id.clone()).or_default();
        *n += 1;
        *n
    };
    let one_in = s.rules.refuse_first_attempt_one_in;
    let picked =
        one_in > 0 && id.bytes().fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(b))) % one_in == 0;
    if log.refuse_first > 0 || s.started.elapsed() < s.rules.refuse_during || (picked && attempt == 1) {
        log.refuse_first = log.refuse_first.saturating_sub(1);
        log.refused += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    log.accepted.push(Delivery { id, body });
    StatusCode::NO_CONTENT
}
