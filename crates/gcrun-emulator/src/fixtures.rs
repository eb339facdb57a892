//! Action definitions, flows and OAuth clients the emulator serves.
//!
//! A fixture file is JSON: `clients`, `actions` (Genesys's Action shape
//! plus an emulator-only `output` template), and `flows`. Output templates
//! may hold `"{{inputs.NAME}}"` strings, replaced by that input's value, so
//! a test can tell one run's outputs from another's.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// The demo set shipped with gcrun (see README, "The emulator").
pub const DEMO_FIXTURES: &str = include_str!("../fixtures/demo.json");

/// The ids of the shipped demo set, so the demo, the tests and users'
/// own checks name them once (a test holds them to `fixtures/demo.json`).
pub mod demo {
    pub const CLIENT_ID: &str = "gcrun-demo-client";
    pub const CLIENT_SECRET: &str = "gcrun-demo-secret";
    /// Customer lookup: `customerId` (string, ≤ 16), `channel` (enum).
    pub const LOOKUP: &str = "custom_-_3c1f5a2e-7b4d-4c8e-9a61-2f0d8b7e5c41";
    /// Callback request: `phoneNumber` (pattern), `priority` (1–5).
    pub const CALLBACK: &str = "custom_-_8e2d4b6a-1f3c-4a5e-b7d9-0c2e4f6a8b13";
    /// Score: `amount` (≥ 0), `vip` (boolean), `region`.
    pub const SCORE: &str = "custom_-_1a9c7e5b-3d2f-4b6a-8c0e-5f7a9b1d3e26";
    /// Case update: `caseId` (required), `status` (enum).
    pub const CASE: &str = "custom_-_5d3b1f9e-7c6a-4e2d-a8b0-9e1c3a5d7f42";
    pub const ORDER_FLOW: &str = "7f3a9c1e-5b2d-4f8a-9e6c-1d3b5a7c9e20";
    pub const SURVEY_FLOW: &str = "2b8d6f4a-0e9c-4a1b-8d3f-5c7e9a1b3d64";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fixtures {
    pub clients: Vec<ClientFixture>,
    #[serde(default)]
    pub actions: Vec<ActionFixture>,
    #[serde(default)]
    pub flows: Vec<FlowFixture>,
}

/// An OAuth client the emulator accepts.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientFixture {
    pub client_id: String,
    pub client_secret: String,
}

impl std::fmt::Debug for ClientFixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientFixture").field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

/// A data action: the Genesys Action fields, plus `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionFixture {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub integration_id: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub version: Option<i64>,
    #[serde(default)]
    pub secure: Option<bool>,
    #[serde(default)]
    pub config: Option<Value>,
    pub contract: Value,
    /// The outputs of a successful run (a template).
    #[serde(default)]
    pub output: Option<Value>,
}

/// An Architect workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FlowFixture {
    pub id: String,
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub output: Option<Value>,
}

#[derive(Debug, Error)]
pub enum FixtureError {
    #[error("fixture file is not valid: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("fixture file is not valid: {0}")]
    Invalid(String),
}

impl Fixtures {
    /// The demo fixtures compiled into the binary.
    pub fn demo() -> Self {
        Self::from_json(DEMO_FIXTURES).expect("the shipped demo fixtures are valid (a test checks them)")
    }

    /// Parses and checks a fixture file: ids unique, every action's input
    /// schema compiles, at least one client.
    pub fn from_json(text: &str) -> Result<Self, FixtureError> {
        let fixtures: Fixtures = serde_json::from_str(text)?;
        if fixtures.clients.is_empty() {
            return Err(FixtureError::Invalid("at least one OAuth client is needed".into()));
        }
        let mut ids = std::collections::HashSet::new();
        for a in &fixtures.actions {
            if !ids.insert(a.id.as_str()) {
                return Err(FixtureError::Invalid(format!("duplicate action id {}", a.id)));
            }
            if let Some(schema) = input_schema(&a.contract) {
                gcrun_model::InputSchema::compile(schema)
                    .map_err(|e| FixtureError::Invalid(format!("action {}: {e}", a.id)))?;
            }
        }
        for f in &fixtures.flows {
            if !ids.insert(f.id.as_str()) {
                return Err(FixtureError::Invalid(format!("duplicate flow id {}", f.id)));
            }
        }
        Ok(fixtures)
    }
}

/// `contract.input.inputSchema` (or the flattened form).
pub fn input_schema(contract: &Value) -> Option<&Value> {
    let input = contract.get("input")?;
    input.get("inputSchema").or_else(|| input.get("inputSchemaFlattened"))
}

/// Fills `{{inputs.NAME}}` placeholders. A string that is exactly one
/// placeholder takes the input's value (keeping its type); placeholders
/// inside longer strings are replaced by the value's text.
pub fn render_output(template: &Value, inputs: &Map<String, Value>) -> Value {
    match template {
        Value::String(s) => {
            if let Some(name) = s.strip_prefix("{{inputs.").and_then(|r| r.strip_suffix("}}")) {
                if !name.contains("{{") {
                    return inputs.get(name).cloned().unwrap_or(Value::Null);
                }
            }
            let mut out = s.clone();
            for (name, value) in inputs {
                let text = match value {
                    Value::String(v) => v.clone(),
                    other => other.to_string(),
                };
                out = out.replace(&format!("{{{{inputs.{name}}}}}"), &text);
            }
            Value::String(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| render_output(v, inputs)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), render_output(v, inputs))).collect()),
        other => other.clone(),
    }
}
