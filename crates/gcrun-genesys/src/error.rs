//! One error type for every call: what happened, what the server said, and
//! whether trying again can help.

use std::fmt;
use std::time::{Duration, SystemTime};

use gcrun_model::ErrorClass;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Genesys Cloud's error body (`ErrorBody` in the SDKs). Unknown fields are
/// ignored; every field is optional because proxies and old endpoints send
/// partial bodies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_with_params: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_params: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ErrorBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<ErrorLimit>,
}

/// One entry of `ErrorBody.details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_name: Option<String>,
}

/// `ErrorBody.limit`: which limit a 429 hit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorLimit {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub value: Option<u64>,
}

/// The OAuth service's error body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OAuthErrorBody {
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
}

/// The `inin-ratelimit-*` response headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub allowed: Option<u64>,
    pub count: Option<u64>,
    pub reset: Option<u64>,
}

impl RateLimit {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let num = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse().ok();
        Self {
            allowed: num("inin-ratelimit-allowed"),
            count: num("inin-ratelimit-count"),
            reset: num("inin-ratelimit-reset"),
        }
    }
}

/// What kind of failure an [`ApiError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiErrorKind {
    /// The server answered with a non-2xx status.
    Http,
    /// No complete answer: connect failure, timeout, connection dropped.
    Transport,
    /// A 2xx answer whose body is not the expected JSON.
    Decode,
    /// The OAuth token endpoint refused or failed.
    Auth,
    /// The call does not exist for this flavor (polling `execute`).
    Unsupported,
}

/// A failed Genesys Cloud call. Carries everything an operator needs to
/// follow it up with Genesys (status, code, `ININ-Correlation-ID`) and the
/// [`ErrorClass`] a handler acts on. Never carries a token or secret.
///
/// Boxed so that `Result<T, ApiError>` stays one pointer wide on the happy
/// path; fields are reached through `Deref` ([`ApiErrorDetails`]).
#[derive(Debug, Clone)]
pub struct ApiError(Box<ApiErrorDetails>);

impl std::ops::Deref for ApiError {
    type Target = ApiErrorDetails;
    fn deref(&self) -> &ApiErrorDetails {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ApiErrorDetails {
        &mut self.0
    }
}

/// What an [`ApiError`] knows.
#[derive(Debug, Clone)]
pub struct ApiErrorDetails {
    pub kind: ApiErrorKind,
    /// `METHOD /path` of the call, with ids (not credentials).
    pub endpoint: String,
    pub status: Option<u16>,
    pub body: Option<ErrorBody>,
    pub oauth: Option<OAuthErrorBody>,
    /// The body when it was not JSON (truncated to 2 KiB).
    pub raw_body: Option<String>,
    pub correlation_id: Option<String>,
    pub rate_limit: RateLimit,
    pub retry_after: Option<Duration>,
    /// Lower-level cause (transport, decode), as text.
    pub detail: Option<String>,
    pub class: ErrorClass,
    /// The request may have reached Genesys and taken effect even though no
    /// usable answer came back (a timeout after sending, a connection cut
    /// mid-answer, a truncated body). Retrying a submit then risks running
    /// it twice; a connect failure is never ambiguous.
    pub ambiguous: bool,
}

/// The longest `Retry-After` honoured. A server (or a webhook receiver)
/// asking for more is capped: a wait of days is indistinguishable from a
/// bug, and an absurd value must not overflow a clock.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);

const RAW_BODY_LIMIT: usize = 2048;

impl ApiError {
    /// Builds the error for a non-2xx answer and classifies it.
    pub fn from_response(endpoint: String, status: u16, headers: &HeaderMap, body: &[u8]) -> Self {
        let correlation_id = headers.get("inin-correlation-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let retry_after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let parsed: Option<ErrorBody> = serde_json::from_slice(body)
            .ok()
            .filter(|b: &ErrorBody| b.message.is_some() || b.code.is_some() || b.status.is_some());
        let raw_body = parsed.is_none().then(|| truncate(body)).filter(|s| !s.is_empty());
        let class = classify(status, parsed.as_ref(), retry_after);
        Self(Box::new(ApiErrorDetails {
            kind: ApiErrorKind::Http,
            endpoint,
            status: Some(status),
            correlation_id: correlation_id.or_else(|| parsed.as_ref().and_then(|b| b.context_id.clone())),
            body: parsed,
            oauth: None,
            raw_body,
            rate_limit: RateLimit::from_headers(headers),
            retry_after,
            detail: None,
            class,
            ambiguous: false,
        }))
    }

    /// No complete answer arrived: always worth another try.
    pub fn transport(endpoint: String, err: &reqwest::Error) -> Self {
        let what = if err.is_timeout() {
            "timed out"
        } else if err.is_connect() {
            "could not connect"
        } else if err.is_body() || err.is_decode() {
            "connection failed while reading the response"
        } else {
            "request failed"
        };
        let mut e = Self::bare(
            ApiErrorKind::Transport,
            endpoint,
            format!("{what}: {}", error_chain(err)),
            ErrorClass::Retryable { after: None },
        );
        e.ambiguous = !err.is_connect();
        e
    }

    /// A 2xx whose body is not what the API documents. Retryable: it is
    /// almost always a proxy or a truncated answer, and callers that submit
    /// protect themselves with idempotency (runName) against duplicates.
    pub fn decode(endpoint: String, status: u16, headers: &HeaderMap, body: &[u8], err: &serde_json::Error) -> Self {
        let mut e = Self::bare(
            ApiErrorKind::Decode,
            endpoint,
            format!("unexpected response body: {err}"),
            ErrorClass::Retryable { after: None },
        );
        e.status = Some(status);
        e.raw_body = Some(truncate(body));
        e.correlation_id = headers.get("inin-correlation-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        e.ambiguous = true;
        e
    }

    pub(crate) fn bare(kind: ApiErrorKind, endpoint: String, detail: String, class: ErrorClass) -> Self {
        Self(Box::new(ApiErrorDetails {
            kind,
            endpoint,
            status: None,
            body: None,
            oauth: None,
            raw_body: None,
            correlation_id: None,
            rate_limit: RateLimit::default(),
            retry_after: None,
            detail: Some(detail),
            class,
            ambiguous: false,
        }))
    }

    pub fn is_retryable(&self) -> bool {
        self.class.is_retryable()
    }

    /// The ErrorBody `code`, e.g. `too.many.requests.retry.after`.
    pub fn code(&self) -> Option<&str> {
        self.body.as_ref().and_then(|b| b.code.as_deref())
    }

    /// A short, log-safe reason to store with a run.
    pub fn reason(&self) -> String {
        self.to_string()
    }

    /// What this failure means for the caller: the one thing the worker
    /// decides on. Nothing outside this crate reads Genesys status codes.
    pub fn verdict(&self) -> Verdict {
        // A token request that failed says nothing about the run itself: it
        // was never sent, so it is never ambiguous.
        if self.kind == ApiErrorKind::Auth {
            return match (self.is_retryable(), self.status) {
                (false, _) => Verdict::Refused,
                (true, Some(429)) => Verdict::RateLimited(self.retry_after),
                (true, _) => Verdict::RetryAfter(self.retry_after),
            };
        }
        if self.ambiguous {
            return Verdict::AmbiguousOutcome;
        }
        match (self.status, self.class) {
            (Some(429), _) => Verdict::RateLimited(self.retry_after),
            (_, ErrorClass::Retryable { after }) => Verdict::RetryAfter(after),
            (Some(401 | 403), _) => Verdict::Refused,
            (Some(404), _) => Verdict::NotFound,
            (Some(500), _) => Verdict::ActionFailed,
            _ => Verdict::Invalid,
        }
    }

    /// The error a run that failed on this answer stores (and its webhook
    /// carries): the ErrorBody code, else `http_<status>`, else the kind of
    /// failure, with the status and correlation id for Genesys support.
    pub fn run_error(&self) -> gcrun_model::RunError {
        let code = self
            .code()
            .map(str::to_owned)
            .or_else(|| self.status.map(|s| format!("http_{s}")))
            .unwrap_or_else(|| self.label());
        gcrun_model::RunError {
            status: self.status,
            correlation_id: self.correlation_id.clone(),
            ..gcrun_model::RunError::new(code, self.to_string())
        }
    }

    /// The metric label of this failure: the HTTP status, or the kind of
    /// failure when there was no answer (`transport`, `decode`, `auth`).
    pub fn label(&self) -> String {
        match (self.kind, self.status) {
            (ApiErrorKind::Http | ApiErrorKind::Auth, Some(s)) => s.to_string(),
            (kind, _) => format!("{kind:?}").to_lowercase(),
        }
    }
}

/// What a failed Genesys call means for the caller, so that callers match
/// on meaning instead of reading status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Transient (502/503/504, 408, a 500 that is not the action's own
    /// failure, a connect failure): try again, no sooner than the server's
    /// `Retry-After` when it sent one.
    RetryAfter(Option<Duration>),
    /// 429: a limit of the org or the token. Every worker of this client
    /// should wait (the server's `Retry-After`, when it sent one).
    RateLimited(Option<Duration>),
    /// The request may have reached Genesys and taken effect, but no usable
    /// answer came back (a timeout after sending, a cut or undecodable
    /// answer). Harmless to repeat for a read; a blind repeat of a submit
    /// may run the action twice.
    AmbiguousOutcome,
    /// 404: the action, flow or remote run does not exist.
    NotFound,
    /// The credentials or permissions were refused (401 after a fresh
    /// token, 403, the OAuth service saying no): gcrun's setup, not the
    /// run's fault.
    Refused,
    /// The action ran and failed (a 500 whose details name an `ACTION.*`
    /// error): permanent for this request.
    ActionFailed,
    /// The request itself is wrong (400, 409, 413, 422, an unsupported
    /// call): permanent.
    Invalid,
}

impl Verdict {
    /// Whether trying the same call again can help.
    pub fn is_retryable(self) -> bool {
        matches!(self, Verdict::RetryAfter(_) | Verdict::RateLimited(_) | Verdict::AmbiguousOutcome)
    }

    /// The server's requested wait, if any.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            Verdict::RetryAfter(d) | Verdict::RateLimited(d) => d,
            _ => None,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.endpoint)?;
        if let Some(status) = self.status {
            write!(f, ": HTTP {status}")?;
        }
        if let Some(body) = &self.body {
            if let Some(code) = &body.code {
                write!(f, " {code}")?;
            }
            if let Some(message) = &body.message {
                write!(f, ": {message}")?;
            }
            let details: Vec<&str> = body.details.iter().filter_map(|d| d.error_code.as_deref()).collect();
            if !details.is_empty() {
                write!(f, " [{}]", details.join(", "))?;
            }
        }
        if let Some(oauth) = &self.oauth {
            let text = oauth.error_description.as_deref().or(oauth.description.as_deref());
            match (&oauth.error, text) {
                (Some(err), Some(text)) => write!(f, " {err}: {text}")?,
                (Some(err), None) => write!(f, " {err}")?,
                (None, Some(text)) => write!(f, " {text}")?,
                (None, None) => {}
            }
        }
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        if self.body.is_none() && self.oauth.is_none() {
            if let Some(raw) = &self.raw_body {
                write!(f, ": body {raw:?}")?;
            }
        }
        if let Some(id) = &self.correlation_id {
            write!(f, " (correlation id {id})")?;
        }
        match self.class {
            ErrorClass::Retryable { after: Some(d) } => {
                write!(f, " [retryable after {}s]", d.as_secs_f64())
            }
            ErrorClass::Retryable { after: None } => write!(f, " [retryable]"),
            ErrorClass::Fatal => write!(f, " [fatal]"),
        }
    }
}

impl std::error::Error for ApiError {}

/// Which answers are worth another try. Follows Genesys's guidance (retry
/// 429 and 502/503/504 with capped backoff) and the Go SDK (5xx except
/// 501), with one refinement: a 500 whose details name an `ACTION.*` error
/// is the data action itself failing (remote endpoint, auth, processing),
/// which a retry will not fix.
pub fn classify(status: u16, body: Option<&ErrorBody>, retry_after: Option<Duration>) -> ErrorClass {
    match status {
        408 | 429 | 502 | 503 | 504 => ErrorClass::Retryable { after: retry_after },
        500 => {
            let action_failed = body.is_some_and(|b| {
                b.details.iter().any(|d| d.error_code.as_deref().is_some_and(|c| c.starts_with("ACTION.")))
            });
            if action_failed { ErrorClass::Fatal } else { ErrorClass::Retryable { after: retry_after } }
        }
        _ => ErrorClass::Fatal,
    }
}

/// `Retry-After` is seconds (Genesys always sends seconds; the spec's sample
/// that sleeps milliseconds is a bug) or an HTTP date (RFC 9110 §10.2.3).
/// Capped at [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs.min(MAX_RETRY_AFTER.as_secs()))
    } else if let Ok(secs) = value.parse::<f64>() {
        if secs.is_nan() || secs < 0.0 {
            return None;
        }
        Duration::try_from_secs_f64(secs).unwrap_or(MAX_RETRY_AFTER)
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

fn truncate(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if text.len() <= RAW_BODY_LIMIT {
        return text.into_owned();
    }
    let mut end = RAW_BODY_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
