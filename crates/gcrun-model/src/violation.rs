//! The single shape of "your request is wrong": a JSON-Pointer path into the
//! request, a stable machine-readable code, and a human message.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One thing wrong with a request. `path` is a JSON Pointer (RFC 6901) into
/// the request document, e.g. `/inputs/customerId`; `code` is stable and
/// meant for programs (`required`, `maxLength`, `flat_value`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Violation {
    pub path: String,
    pub code: String,
    pub message: String,
}

impl Violation {
    pub fn new(path: impl Into<String>, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), code: code.into(), message: message.into() }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() { "/" } else { &self.path };
        write!(f, "{path}: {} ({})", self.message, self.code)
    }
}

/// Every violation found in one request. Never empty when returned as an
/// error: validation collects all problems before giving up, so a caller
/// fixes everything in one round trip.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    pub fn push(&mut self, v: Violation) {
        self.0.push(v);
    }

    pub fn extend(&mut self, other: impl IntoIterator<Item = Violation>) {
        self.0.extend(other);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Violation> {
        self.0.iter()
    }

    /// `Ok(())` when nothing was found, the violations otherwise.
    pub fn into_result(self) -> Result<(), Violations> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }

    /// Whether some violation sits at `path` with `code`; handy in tests
    /// and for callers that react to one kind of problem.
    pub fn contains(&self, path: &str, code: &str) -> bool {
        self.0.iter().any(|v| v.path == path && v.code == code)
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violation(s)", self.0.len())?;
        for v in &self.0 {
            write!(f, "; {v}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

impl IntoIterator for Violations {
    type Item = Violation;
    type IntoIter = std::vec::IntoIter<Violation>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Escapes one reference token for a JSON Pointer (RFC 6901 §3).
pub fn pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}
