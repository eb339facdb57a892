//! Completion webhooks, signed per Standard Webhooks.
//!
//! Headers: `webhook-id` (the event id, stable across retries so receivers
//! drop duplicates), `webhook-timestamp` (unix seconds of this attempt) and
//! `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body`
//! under the secret's key bytes). Secrets look like `whsec_<base64>`.
//! hmac + sha2 (RustCrypto) rather than hand-rolled crypto.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gcrun_store::RunRecord;
use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use serde_json::{Value, json};
use url::Url;

use crate::egress::{Egress, PublicOnly, literal_refused};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The event name the spec gives.
pub const EVENT: &str = "data_action_run_completed";

/// The Standard Webhooks signing secrets: one, or several while a secret
/// is rotated (`whsec_new,whsec_old`): each signs, so a receiver that knows
/// either verifies, and receivers move to the new one without downtime.
/// `Debug` never shows them.
#[derive(Clone)]
pub struct WebhookSecret(Vec<SecretSlice<u8>>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

/// A secret that is not `whsec_` + base64.
#[derive(Debug, thiserror::Error)]
#[error("webhook secret must be `whsec_` followed by base64 (got something else; the value is not shown)")]
pub struct BadSecret;

impl WebhookSecret {
    /// One secret, or several separated by commas (the first is the newest;
    /// all sign).
    pub fn parse(text: &str) -> Result<Self, BadSecret> {
        let mut keys = Vec::new();
        for one in text.split(',') {
            let b64 = one.trim().strip_prefix("whsec_").ok_or(BadSecret)?;
            let key = STANDARD.decode(b64).map_err(|_| BadSecret)?;
            if key.is_empty() {
                return Err(BadSecret);
            }
            keys.push(SecretSlice::from(key));
        }
        Ok(Self(keys))
    }

    /// A fresh random secret (for the demo).
    pub fn generate() -> (Self, String) {
        let key: Vec<u8> =
            uuid::Uuid::new_v4().as_bytes().iter().chain(uuid::Uuid::new_v4().as_bytes()).copied().collect();
        let text = format!("whsec_{}", STANDARD.encode(&key));
        (Self(vec![SecretSlice::from(key)]), text)
    }

    /// The MAC over `id.timestamp.body` under `key`, ready to finalize or verify.
    fn mac(key: &SecretSlice<u8>, id: &str, timestamp: u64, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key.expose_secret()).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// `v1,<base64 signature>` of `id.timestamp.body`, one per secret,
    /// space-separated (the header's list form).
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        self.0
            .iter()
            .map(|key| format!("v1,{}", STANDARD.encode(Self::mac(key, id, timestamp, body).finalize().into_bytes())))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Checks a `webhook-signature` header (which may hold several
    /// space-separated signatures) in constant time.
    pub fn verify(&self, id: &str, timestamp: u64, body: &[u8], header: &str) -> bool {
        header.split(' ').filter_map(|s| s.strip_prefix("v1,")).any(|sig| {
            STANDARD.decode(sig).is_ok_and(|given| {
                self.0.iter().any(|key| Self::mac(key, id, timestamp, body).verify_slice(&given).is_ok())
            })
        })
    }
}

/// The event id: the run, the event, and when the run ended, so it is the
/// same on every retry of one delivery, and a requeued run that ends again
/// sends a new event.
pub fn event_id(record: &RunRecord) -> String {
    format!("{}:{EVENT}:{}", record.id, record.completed_ms.unwrap_or(record.updated_ms))
}

/// The webhook body: the spec's fields plus gcrun's extras.
pub fn body(record: &RunRecord, now_ms: u64) -> Value {
    let duration = record.duration_ms().map(|ms| ms as f64 / 1000.0);
    let transitions: Vec<Value> = record
        .transitions
        .iter()
        .map(|t| json!({"from": t.from, "to": t.to, "at": rfc3339_ms(t.at_ms), "cause": t.cause}))
        .collect();
    let mut body = json!({
        "event": EVENT,
        "runId": record.id,
        "status": record.status,
        "durationSeconds": duration,
        "success": record.status.is_success(),
        "audit": {
            "runId": record.id,
            "definitionId": record.target,
            "status": record.status,
            "durationSeconds": duration,
            "transitions": transitions,
            "timestamp": rfc3339_ms(now_ms),
        },
        "definitionId": record.target,
        "flavor": record.flavor,
        "remoteRunId": record.remote_id,
    });
    if let Some(c) = &record.upstream_correlation {
        body["upstreamCorrelationId"] = json!(c);
    }
    if !record.request.metadata().is_empty() {
        body["metadata"] = json!(record.request.metadata());
    }
    if record.secure {
        // A secure action: its outputs only if the run asked for them (the
        // record no longer holds them otherwise).
        body["secure"] = json!(true);
        body["dataWithheld"] = json!(record.withholds_secure_data());
    }
    match (&record.outputs, &record.error) {
        (Some(outputs), _) if record.status.is_success() => body["outputs"] = outputs.clone(),
        (_, Some(error)) => body["error"] = json!(error),
        _ if !record.status.is_success() => {
            if let Some(reason) = &record.last_error {
                body["error"] = json!({"code": record.status.as_str(), "message": reason});
            }
        }
        _ => {}
    }
    body
}

pub use gcrun_model::timestamp::rfc3339_ms;

/// One webhook request, as the webhook step decided it. `Debug` shows the
/// URL without its query.
#[derive(Clone, PartialEq)]
pub struct Outgoing {
    pub url: Url,
    /// The stable event id (`webhook-id`).
    pub event_id: String,
    pub body: Value,
}

impl fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outgoing").field("url", &shown_url(&self.url)).field("event_id", &self.event_id).finish()
    }
}

/// What a receiver's answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// 2xx.
    Delivered,
    /// Worth another attempt (408, 429, 5xx, no answer), no sooner than
    /// the receiver's `Retry-After` when it sent one.
    Retry { reason: String, after: Option<Duration> },
    /// Another attempt cannot help (any other 4xx, a redirect).
    Dead(String),
}

/// The signing keys as configured: a value, or a file (a mounted Secret)
/// read again when it changes, so rotating the keys (`whsec_new,whsec_old`,
/// then `whsec_new`) needs no restart. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WebhookKeys(std::sync::Arc<gcrun_secrets::Parsed<WebhookSecret>>);

impl WebhookKeys {
    /// Keys from `source`, parsed now (a bad secret fails at start).
    pub fn from_source(source: gcrun_secrets::SecretSource) -> Result<Self, String> {
        let parse = |text: &str| WebhookSecret::parse(text).map_err(|e| e.to_string());
        Ok(Self(std::sync::Arc::new(gcrun_secrets::Parsed::new(source, parse)?)))
    }

    /// Fixed keys (`whsec_...`, comma-separated).
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::from_source(gcrun_secrets::SecretSource::value(text))
    }

    /// The keys as they are now.
    pub fn current(&self) -> Result<std::sync::Arc<WebhookSecret>, String> {
        self.0.current()
    }
}

/// A URL as messages show it: without its query, which may carry a token.
pub fn shown_url(url: &Url) -> String {
    format!("{}{}", url.origin().ascii_serialization(), url.path())
}

/// The webhook HTTP client: no redirects (a receiver cannot bounce a
/// signed body elsewhere), a timeout per attempt, and the egress policy
/// (see [`crate::egress`]).
#[derive(Debug, Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    egress: Egress,
}

/// Builds the webhook client. Failing to build it (no TLS backend, say)
/// fails the worker: it must not fall back to a client that follows
/// redirects, never times out or reaches private networks.
pub fn client(timeout: Duration, egress: Egress) -> Result<WebhookClient, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("gcrun-webhooks/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout);
    if egress == Egress::PublicOnly {
        // No proxy either: a proxy would resolve and reach the address
        // itself, past the resolver's check.
        builder = builder.dns_resolver(std::sync::Arc::new(PublicOnly)).no_proxy();
    }
    Ok(WebhookClient { http: builder.build()?, egress })
}

/// Sends one signed delivery and says what the answer means. A refused
/// address and a closed port read the same in the stored reason.
pub async fn deliver(client: &WebhookClient, secret: Option<&WebhookSecret>, out: &Outgoing, now_ms: u64) -> Delivery {
    let shown = shown_url(&out.url);
    let unreachable =
        || Delivery::Retry { reason: format!("could not deliver to {shown}: could not connect"), after: None };
    if literal_refused(&out.url, client.egress) {
        tracing::warn!(url = %shown, "webhook address refused by the egress policy");
        return unreachable();
    }
    let bytes = serde_json::to_vec(&out.body).unwrap_or_default();
    let timestamp = now_ms / 1000;
    let mut request = client
        .http
        .post(out.url.clone())
        .header("content-type", "application/json")
        .header("webhook-id", &out.event_id)
        .header("webhook-timestamp", timestamp.to_string());
    if let Some(secret) = secret {
        request = request.header("webhook-signature", secret.sign(&out.event_id, timestamp, &bytes));
    }
    match request.body(bytes).send().await {
        Ok(resp) => {
            classify(&shown, resp.status().as_u16(), resp.headers().get("retry-after").and_then(|v| v.to_str().ok()))
        }
        Err(e) if e.is_timeout() => {
            Delivery::Retry { reason: format!("could not deliver to {shown}: timed out"), after: None }
        }
        Err(e) => {
            // The detail (refused by policy, closed port, TLS) is for the
            // operator's log, not for the submitter's stored error.
            tracing::debug!(url = %shown, error = %e.without_url(), "webhook delivery failed");
            unreachable()
        }
    }
}

/// What a receiver's status (and `Retry-After`) means.
pub fn classify(shown: &str, status: u16, retry_after: Option<&str>) -> Delivery {
    match status {
        200..=299 => Delivery::Delivered,
        300..=399 => {
            Delivery::Dead(format!("receiver at {shown} answered a redirect ({status}); configure the final URL"))
        }
        408 | 429 | 500.. => Delivery::Retry {
            reason: format!("receiver at {shown} answered HTTP {status}"),
            after: retry_after.and_then(|v| gcrun_genesys::error::parse_retry_after(v, SystemTime::now())),
        },
        _ => Delivery::Dead(format!("receiver at {shown} answered HTTP {status}")),
    }
}
