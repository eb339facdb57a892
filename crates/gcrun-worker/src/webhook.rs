//! Completion webhooks, signed per Standard Webhooks.
//!
//! Headers: `webhook-id` (the event id, stable across retries so receivers
//! drop duplicates), `webhook-timestamp` (unix seconds of this attempt) and
//! `webhook-signature` (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body`
//! under the secret's key bytes). Secrets look like `whsec_<base64>`.
//! hmac + sha2 (RustCrypto) rather than hand-rolled crypto.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gcrun_store::RunRecord;
use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretSlice};
use serde_json::{Value, json};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The event name the spec gives.
pub const EVENT: &str = "data_action_run_completed";

/// A Standard Webhooks signing secret. `Debug` never shows it.
#[derive(Clone)]
pub struct WebhookSecret(SecretSlice<u8>);

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
    pub fn parse(text: &str) -> Result<Self, BadSecret> {
        let b64 = text.trim().strip_prefix("whsec_").ok_or(BadSecret)?;
        let key = STANDARD.decode(b64).map_err(|_| BadSecret)?;
        if key.is_empty() {
            return Err(BadSecret);
        }
        Ok(Self(SecretSlice::from(key)))
    }

    /// A fresh random secret (for the demo).
    pub fn generate() -> (Self, String) {
        let key: Vec<u8> =
            uuid::Uuid::new_v4().as_bytes().iter().chain(uuid::Uuid::new_v4().as_bytes()).copied().collect();
        let text = format!("whsec_{}", STANDARD.encode(&key));
        (Self(SecretSlice::from(key)), text)
    }

    /// The MAC over `id.timestamp.body`, ready to finalize or verify.
    fn mac(&self, id: &str, timestamp: u64, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.0.expose_secret()).expect("HMAC takes keys of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// `v1,<base64 signature>` of `id.timestamp.body`.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(id, timestamp, body).finalize().into_bytes()))
    }

    /// Checks a `webhook-signature` header (which may hold several
    /// space-separated signatures) in constant time.
    pub fn verify(&self, id: &str, timestamp: u64, body: &[u8], header: &str) -> bool {
        header.split(' ').filter_map(|s| s.strip_prefix("v1,")).any(|sig| {
            STANDARD.decode(sig).is_ok_and(|given| self.mac(id, timestamp, body).verify_slice(&given).is_ok())
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
    if let Some(meta) = record.request.get("metadata") {
        body["metadata"] = meta.clone();
    }
    match (&record.outputs, &record.error) {
        (Some(outputs), _) if record.status.is_success() => body["outputs"] = outputs.clone(),
        (_, Some(error)) => body["error"] = error.clone(),
        _ => {
            if let Some(reason) = &record.last_error {
                body["error"] = json!({"code": record.status.as_str(), "message": reason});
            }
        }
    }
    body
}

/// Unix milliseconds as RFC 3339 (UTC).
pub fn rfc3339_ms(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}
