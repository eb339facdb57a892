//! Identifiers and the flavor switch.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// gcrun's own id for a run. A UUID v7, so ids sort by creation time, which
/// keeps Redis scans and audit listings in a natural order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String, format = Uuid)]
pub struct RunId(Uuid);

impl RunId {
    /// A new, time-ordered id. Reads the system clock through `uuid`; this is
    /// the one place the model touches the outside world, and it is harmless.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for RunId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Which Genesys Cloud API drives a run. See `reference/genesys-cloud.md`:
/// `runs` is the spec's asynchronous contract (not in real Genesys Cloud),
/// `execute` is the real synchronous data-action call, `workflow` is the
/// real asynchronous Architect flow execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    Runs,
    Execute,
    Workflow,
}

impl Flavor {
    pub const ALL: [Flavor; 3] = [Flavor::Runs, Flavor::Execute, Flavor::Workflow];

    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Runs => "runs",
            Flavor::Execute => "execute",
            Flavor::Workflow => "workflow",
        }
    }

    /// Whether the remote side answers at once (no polling needed).
    pub fn is_synchronous(self) -> bool {
        matches!(self, Flavor::Execute)
    }

    /// Whether the run targets a data action (and so has a JSON-Schema
    /// contract to validate against) rather than an Architect flow.
    pub fn targets_action(self) -> bool {
        !matches!(self, Flavor::Workflow)
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Flavor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "runs" => Ok(Flavor::Runs),
            "execute" => Ok(Flavor::Execute),
            "workflow" => Ok(Flavor::Workflow),
            other => Err(format!("unknown flavor `{other}`; expected one of: runs, execute, workflow")),
        }
    }
}
