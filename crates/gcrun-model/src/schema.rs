//! Validation of run inputs against a data action's input contract
//! (`contract.input.inputSchema`), a JSON Schema document.
//!
//! Uses the `jsonschema` crate (compiled validators, every draft, error
//! iteration) rather than a hand-written subset: real contracts carry more
//! keywords than the demo's. The crate is built without its HTTP and file
//! resolvers, so a contract can never make gcrun fetch a URL or read a file
//! (Genesys does not support `$ref` in contracts anyway).

use serde_json::{Map, Value};
use thiserror::Error;

use crate::violation::{Violation, Violations, pointer_token};

/// A compiled input contract. Cheap to share behind an `Arc`; compile once
/// per definition version and reuse.
pub struct InputSchema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for InputSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputSchema").finish_non_exhaustive()
    }
}

/// The action's contract itself is unusable: that is the action owner's
/// problem, not the caller's, so it is kept apart from [`Violations`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("the action's input schema is not a usable JSON Schema: {0}")]
pub struct SchemaError(pub String);

impl InputSchema {
    /// Compiles a schema. The draft is taken from `$schema` (Genesys
    /// declares draft-04); without one, draft-04 is assumed, as Genesys does.
    pub fn compile(schema: &Value) -> Result<Self, SchemaError> {
        let mut options = jsonschema::options();
        if schema.get("$schema").is_none() {
            options = options.with_draft(jsonschema::Draft::Draft4);
        }
        let validator = options.build(schema).map_err(|e| SchemaError(e.to_string()))?;
        Ok(Self { validator })
    }

    /// Every violation of the schema by `inputs`, with paths under
    /// `/inputs`. A missing required property is reported at the property's
    /// own path (`/inputs/customerId`), which is where a caller looks.
    pub fn validate(&self, inputs: &Map<String, Value>) -> Violations {
        let instance = Value::Object(inputs.clone());
        let mut out = Violations::default();
        for error in self.validator.iter_errors(&instance) {
            let base = format!("/inputs{}", error.instance_path().as_str());
            let keyword = error.kind().keyword().to_string();
            match error.kind() {
                jsonschema::error::ValidationErrorKind::Required { property } => {
                    let name = property.as_str().map(str::to_owned).unwrap_or_else(|| property.to_string());
                    out.push(Violation::new(
                        format!("{base}/{}", pointer_token(&name)),
                        keyword,
                        format!("`{name}` is required"),
                    ));
                }
                jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                    for name in unexpected {
                        out.push(Violation::new(
                            format!("{base}/{}", pointer_token(name)),
                            keyword.clone(),
                            format!("`{name}` is not a property the action accepts"),
                        ));
                    }
                }
                _ => out.push(Violation::new(base, keyword, error.to_string())),
            }
        }
        out
    }
}
