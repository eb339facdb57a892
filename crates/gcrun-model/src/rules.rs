//! Genesys Cloud's data-action contract rules and the spec's size limits,
//! as checks that need no schema. They run at the door (producer) and again
//! in the worker, so a request that slipped past an old producer still ends
//! with a clear reason instead of a confusing 400 from Genesys.
//!
//! Every number is a field of [`RequestLimits`] with the reference's value as
//! its default: limits are configuration, never constants buried in code.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::violation::{Violation, Violations, pointer_token};

/// Limits and contract rules applied to a run request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestLimits {
    /// Longest accepted string input, in characters (the spec: 10,000).
    pub max_string_chars: usize,
    /// Largest accepted `inputs` object, in bytes of compact JSON
    /// (function data actions accept about 750,000 bytes).
    pub max_payload_bytes: usize,
    /// Require flat input values (string, number, boolean, null). Genesys
    /// data actions reject nested objects and arrays.
    pub require_flat_inputs: bool,
    /// Require input names to match `^[A-Za-z][A-Za-z0-9_-]*$`.
    pub enforce_name_pattern: bool,
    /// Input names Genesys reserves for itself.
    pub reserved_names: Vec<String>,
    /// Longest action/flow id accepted.
    pub max_id_chars: usize,
    /// Longest `runName` accepted.
    pub max_run_name_chars: usize,
    /// Longest `flowVersion` accepted.
    pub max_flow_version_chars: usize,
    /// Longest idempotency key accepted.
    pub max_idempotency_key_chars: usize,
    /// Most metadata entries accepted.
    pub max_metadata_entries: usize,
    /// Longest metadata key or value accepted, in characters.
    pub max_metadata_chars: usize,
    /// Longest webhook URL accepted.
    pub max_url_chars: usize,
    /// Whether a webhook URL may name a loopback, private, link-local or
    /// reserved address literal (or `localhost`); off by default, as the
    /// worker's egress policy.
    pub webhook_private_addresses: bool,
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_string_chars: 10_000,
            max_payload_bytes: 750_000,
            require_flat_inputs: true,
            enforce_name_pattern: true,
            reserved_names: vec!["orgId".into(), "integrationId".into(), "rawRequest".into()],
            max_id_chars: 256,
            max_run_name_chars: 200,
            max_flow_version_chars: 64,
            max_idempotency_key_chars: 256,
            max_metadata_entries: 32,
            max_metadata_chars: 1024,
            max_url_chars: 2048,
            webhook_private_addresses: false,
        }
    }
}

/// Whether `name` matches `^[A-Za-z][A-Za-z0-9_-]*$` (Genesys's rule for
/// contract property names). Hand-written: it is four lines and does not
/// justify a regex engine in a crate that must stay small.
pub fn is_valid_input_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl RequestLimits {
    /// No limits, only the shape: what reading back a stored request needs.
    /// A request was checked against the producer's limits when it was
    /// accepted; a store must not refuse to read it because a later process
    /// has stricter ones (the worker re-checks with its own, and says so).
    pub fn stored() -> Self {
        Self {
            max_string_chars: usize::MAX,
            max_payload_bytes: usize::MAX,
            require_flat_inputs: false,
            enforce_name_pattern: false,
            reserved_names: Vec::new(),
            max_id_chars: usize::MAX,
            max_run_name_chars: usize::MAX,
            max_flow_version_chars: usize::MAX,
            max_idempotency_key_chars: usize::MAX,
            max_metadata_entries: usize::MAX,
            max_metadata_chars: usize::MAX,
            max_url_chars: usize::MAX,
            webhook_private_addresses: true,
        }
    }

    /// Checks an `inputs` object against the contract rules and limits. Paths
    /// are reported under `base` (normally `/inputs`). Returns every problem.
    ///
    /// `action_contract` switches on the rules that belong to data-action
    /// contracts (name pattern, reserved names); Architect flow inputs are
    /// named `Flow.<Variable>` and follow neither.
    pub fn check_inputs(&self, base: &str, inputs: &Map<String, Value>, action_contract: bool) -> Violations {
        let mut out = Violations::default();
        for (name, value) in inputs {
            let path = format!("{base}/{}", pointer_token(name));
            if action_contract && self.enforce_name_pattern && !is_valid_input_name(name) {
                out.push(Violation::new(
                    &path,
                    "name_pattern",
                    format!("input name `{name}` must match ^[A-Za-z][A-Za-z0-9_-]*$"),
                ));
            }
            if action_contract && self.reserved_names.iter().any(|r| r == name) {
                out.push(Violation::new(
                    &path,
                    "reserved_name",
                    format!("input name `{name}` is reserved by Genesys Cloud"),
                ));
            }
            match value {
                Value::Object(_) | Value::Array(_) if self.require_flat_inputs => {
                    out.push(Violation::new(
                        &path,
                        "flat_value",
                        "input values must be flat (string, number, boolean or null), not objects or arrays",
                    ));
                }
                Value::String(s) => {
                    let chars = s.chars().count();
                    if chars > self.max_string_chars {
                        out.push(Violation::new(
                            &path,
                            "string_too_long",
                            format!("string input has {chars} characters; the limit is {}", self.max_string_chars),
                        ));
                    }
                }
                _ => {}
            }
        }
        let bytes = payload_bytes(inputs);
        if bytes > self.max_payload_bytes {
            out.push(Violation::new(
                base,
                "payload_too_large",
                format!("inputs are {bytes} bytes as JSON; the limit is {}", self.max_payload_bytes),
            ));
        }
        out
    }
}

/// Size of the inputs as compact JSON, which is what goes over the wire.
pub fn payload_bytes(inputs: &Map<String, Value>) -> usize {
    // Serializing a Map of Values cannot fail (keys are strings).
    serde_json::to_vec(inputs).map(|v| v.len()).unwrap_or(usize::MAX)
}
