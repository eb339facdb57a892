//! Why a run did not succeed, as stored with it and sent in its webhook.

use serde::{Deserialize, Serialize};

use crate::violation::{Violation, Violations};

/// The error a run ended with: a stable `code` for programs, a `message`
/// for people, and where it came from. A rejected run carries every
/// violation; a run that failed on a Genesys answer carries its HTTP status
/// and correlation id (give that to Genesys support).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunError {
    /// `invalid_request`, an `ErrorBody` code such as
    /// `too.many.requests.retry.after`, a run error such as `crm_down`,
    /// `http_<status>` or `transport`.
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
}

impl RunError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), status: None, correlation_id: None, violations: Vec::new() }
    }

    /// The error of a rejected request: every violation.
    pub fn invalid(v: &Violations) -> Self {
        Self { violations: v.iter().cloned().collect(), ..Self::new("invalid_request", v.to_string()) }
    }
}
