//! The operators' dashboard, served by `gcrun ingest` under `/ops` when
//! operator tokens are configured: a queue overview, the dead-letter
//! browser (the CLI's filters, index-backed pages), a run's detail with
//! its transition timeline, errors and webhook, and requeue and purge with
//! confirmation.
//!
//! A crate of its own so the producer does not grow an HTTP UI: it calls
//! the same [`Operator`] functions the CLI does, and renders
//! server-side with askama templates (compile-time checked, escaped by
//! default). One small script adds "select all"; everything works
//! without it.
//!
//! Access: operator tokens only (`GCRUN_OPERATOR_TOKENS`, distinct from
//! upstream clients' tokens). Signing in with one sets a session cookie
//! (`HttpOnly`, `SameSite=Strict`) that any ingest replica can check: it
//! is the operator's name and expiry, signed with HMAC-SHA256 keyed by
//! that operator's token, so rotating a token ends its sessions. Every
//! form that changes something carries a token derived from the session
//! (CSRF). `Authorization: Bearer <operator token>` works too, for tools.

mod auth;
mod pages;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use gcrun_producer::operator::Operator;
use secrecy::SecretString;

pub use auth::{OperatorToken, parse_operators};

/// Dashboard settings.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// Who may sign in.
    pub operators: Vec<OperatorToken>,
    /// The operators from a file, read again when it changes (tokens
    /// rotate with no restart; a token taken out ends its sessions); when
    /// set, `operators` is not used.
    pub operators_from: Option<Arc<gcrun_secrets::Parsed<Vec<OperatorToken>>>>,
    /// How long a sign-in lasts.
    pub session_ttl: Duration,
    /// Mark the cookie `Secure` (set when users reach ingest over HTTPS,
    /// through a proxy that terminates TLS).
    pub secure_cookie: bool,
    /// Upstream clients' tokens: refused here, and none may equal an
    /// operator's.
    pub client_tokens: Vec<SecretString>,
    /// The tenants operators look at and act on, the first shown at
    /// sign-in (pages name theirs in `?tenant=`, forms in a field, so a
    /// form always acts on the tenant of the page it came from).
    pub tenants: Vec<gcrun_model::Tenant>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            operators: Vec::new(),
            operators_from: None,
            session_ttl: Duration::from_secs(8 * 3600),
            secure_cookie: false,
            client_tokens: Vec::new(),
            tenants: vec![gcrun_model::Tenant::default()],
        }
    }
}

/// The configuration cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone)]
pub(crate) struct App {
    pub operator: Operator,
    pub config: Arc<DashboardConfig>,
}

/// The dashboard's routes, all under `/ops`, for the ingest server to
/// merge. Refuses a configuration with no operator, or an operator token
/// that is also an upstream client's (one token must not be both).
pub fn router(operator: Operator, config: DashboardConfig) -> Result<Router, ConfigError> {
    if config.tenants.is_empty() {
        return Err(ConfigError("the dashboard needs at least one tenant".into()));
    }
    if config.operators.is_empty() {
        return Err(ConfigError("the dashboard needs at least one operator token".into()));
    }
    for op in &config.operators {
        if config.client_tokens.iter().any(|t| auth::same_secret(t, &op.token)) {
            return Err(ConfigError(format!("operator {}'s token is also an ingest client's token", op.name)));
        }
    }
    Ok(pages::routes(App { operator, config: Arc::new(config) }))
}
