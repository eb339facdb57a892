//! One trait over the three ways to run an action, so the pipeline submits
//! and polls without knowing which API it drives.
//!
//! | flavor     | submit                                   | poll                         |
//! |------------|------------------------------------------|------------------------------|
//! | `runs`     | `POST /api/v2/actions/runs` → queued     | `GET /api/v2/actions/runs/{id}` |
//! | `execute`  | `POST .../actions/{id}/execute` → result | none (terminal at once)      |
//! | `workflow` | `POST /api/v2/flows/executions`          | `GET /api/v2/flows/executions/{id}` |

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use gcrun_model::{ErrorClass, Flavor, Target};
use serde_json::{Map, Value};

use crate::client::GenesysClient;
use crate::error::{ApiError, ApiErrorKind};
use crate::types::{ActionRun, ActionRunRequest, FlowExecution, FlowLaunchRequest};

/// A boxed future, so [`RunApi`] stays object-safe (`dyn RunApi`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What to submit. `run_name` is gcrun's run id: sent as `runName` (runs)
/// or `name` (workflow), it lets the remote side and the emulator spot a
/// duplicate submission.
#[derive(Debug, Clone, Copy)]
pub struct SubmitRequest<'a> {
    pub target: &'a Target,
    pub inputs: &'a Map<String, Value>,
    pub run_name: &'a str,
}

/// A remote run's state, normalised across flavors.
#[derive(Debug, Clone, PartialEq)]
pub enum RemotePhase {
    Queued,
    Running,
    Completed {
        outputs: Value,
    },
    /// Permanent failure: the run is over.
    Failed {
        code: String,
        message: String,
    },
    /// A transient run error (`compute_unavailable`, `timeout`): back off
    /// and poll again; the run is not over.
    Transient {
        code: String,
        message: String,
    },
}

impl RemotePhase {
    pub fn is_terminal(&self) -> bool {
        matches!(self, RemotePhase::Completed { .. } | RemotePhase::Failed { .. })
    }
}

/// The answer of a submit or a poll.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteRun {
    /// The remote id to poll; `None` for `execute`, which has nothing to poll.
    pub remote_id: Option<String>,
    pub phase: RemotePhase,
    /// The status exactly as the API spelled it (for the audit trail).
    pub remote_status: String,
}

/// Submit and poll, whatever the flavor.
pub trait RunApi: Send + Sync + fmt::Debug {
    fn flavor(&self) -> Flavor;
    /// Starts a run. A synchronous flavor returns a terminal phase.
    fn submit<'a>(&'a self, request: SubmitRequest<'a>) -> BoxFuture<'a, Result<RemoteRun, ApiError>>;
    /// Reads a run's state.
    fn status<'a>(&'a self, remote_id: &'a str) -> BoxFuture<'a, Result<RemoteRun, ApiError>>;
}

/// `runs` error codes that mean "try again later", not "failed".
pub const TRANSIENT_RUN_ERRORS: [&str; 2] = ["compute_unavailable", "timeout"];

impl GenesysClient {
    /// The [`RunApi`] for `flavor`, sharing this client's pool and token.
    pub fn run_api(&self, flavor: Flavor) -> Box<dyn RunApi> {
        match flavor {
            Flavor::Runs => Box::new(RunsApi(self.clone())),
            Flavor::Execute => Box::new(ExecuteApi { client: self.clone(), flatten: false }),
            Flavor::Workflow => Box::new(WorkflowApi(self.clone())),
        }
    }
}

/// The spec's asynchronous `runs` contract.
#[derive(Debug, Clone)]
pub struct RunsApi(pub GenesysClient);

/// The real, synchronous data-action execute call.
#[derive(Debug, Clone)]
pub struct ExecuteApi {
    pub client: GenesysClient,
    /// Send `?flatten=true` (flattened output).
    pub flatten: bool,
}

/// Architect workflow executions.
#[derive(Debug, Clone)]
pub struct WorkflowApi(pub GenesysClient);

fn wrong_target(flavor: Flavor, target: &Target) -> ApiError {
    ApiError::bare(
        ApiErrorKind::Unsupported,
        format!("submit ({flavor})"),
        format!("flavor {flavor} cannot run {target:?}"),
        ErrorClass::Fatal,
    )
}

/// Maps a `runs` record to a phase. An error with a transient code is
/// transient whatever the status says; an unknown status is treated as
/// still running, so the run deadline (not a panic) ends it.
pub fn runs_phase(run: &ActionRun) -> RemotePhase {
    if let Some(error) = &run.error {
        let message = error.message.clone().unwrap_or_default();
        if TRANSIENT_RUN_ERRORS.contains(&error.code.as_str()) {
            return RemotePhase::Transient { code: error.code.clone(), message };
        }
        if run.status == "failed" {
            return RemotePhase::Failed { code: error.code.clone(), message };
        }
    }
    match run.status.as_str() {
        "queued" => RemotePhase::Queued,
        "completed" => RemotePhase::Completed { outputs: run.outputs.clone().unwrap_or(Value::Object(Map::new())) },
        "failed" => RemotePhase::Failed { code: "failed".into(), message: "run failed without an error body".into() },
        _ => RemotePhase::Running,
    }
}

/// Maps a flow execution to a phase: `COMPLETED` succeeds; `FAILED`,
/// `ERROR`, `TERMINATED` fail; `RUNNING`, `UNKNOWN` (and anything new) poll
/// again.
pub fn workflow_phase(exec: &FlowExecution) -> RemotePhase {
    match exec.status.as_str() {
        "COMPLETED" => {
            RemotePhase::Completed { outputs: exec.output_data.clone().unwrap_or(Value::Object(Map::new())) }
        }
        "FAILED" | "ERROR" | "TERMINATED" => {
            let message = exec
                .completion_reason
                .clone()
                .or_else(|| exec.flow_error_info.as_ref().map(Value::to_string))
                .unwrap_or_default();
            RemotePhase::Failed { code: exec.status.clone(), message }
        }
        _ => RemotePhase::Running,
    }
}

impl RunApi for RunsApi {
    fn flavor(&self) -> Flavor {
        Flavor::Runs
    }

    fn submit<'a>(&'a self, request: SubmitRequest<'a>) -> BoxFuture<'a, Result<RemoteRun, ApiError>> {
        Box::pin(async move {
            let Target::Action { id } = request.target else {
                return Err(wrong_target(Flavor::Runs, request.target));
            };
            let body = ActionRunRequest {
                definition_id: id.clone(),
                mode: "async".into(),
                run_name: Some(request.run_name.to_string()),
                inputs: request.inputs.clone(),
            };
            let run = self.0.submit_action_run(&body).await?;
            Ok(RemoteRun { remote_id: Some(run.id.clone()), phase: runs_phase(&run), remote_status: run.status })
        })
    }

    fn status<'a>(&'a self, remote_id: &'a str) -> BoxFuture<'a, Result<RemoteRun, ApiError>> {
        Box::pin(async move {
            let run = self.0.get_action_run(remote_id).await?;
            Ok(RemoteRun { remote_id: Some(run.id.clone()), phase: runs_phase(&run), remote_status: run.status })
        })
    }
}

impl RunApi for ExecuteApi {
    fn flavor(&self) -> Flavor {
        Flavor::Execute
    }

    fn submit<'a>(&'a self, request: SubmitRequest<'a>) -> BoxFuture<'a, Result<RemoteRun, ApiError>> {
        Box::pin(async move {
            let Target::Action { id } = request.target else {
                return Err(wrong_target(Flavor::Execute, request.target));
            };
            let outputs = self.client.execute_action(id, request.inputs, self.flatten).await?;
            Ok(RemoteRun {
                remote_id: None,
                phase: RemotePhase::Completed { outputs },
                remote_status: "completed".into(),
            })
        })
    }

    fn status<'a>(&'a self, _remote_id: &'a str) -> BoxFuture<'a, Result<RemoteRun, ApiError>> {
        Box::pin(async move {
            Err(ApiError::bare(
                ApiErrorKind::Unsupported,
                "status (execute)".into(),
                "the execute flavor is synchronous: there is nothing to poll".into(),
                ErrorClass::Fatal,
            ))
        })
    }
}

impl RunApi for WorkflowApi {
    fn flavor(&self) -> Flavor {
        Flavor::Workflow
    }

    fn submit<'a>(&'a self, request: SubmitRequest<'a>) -> BoxFuture<'a, Result<RemoteRun, ApiError>> {
        Box::pin(async move {
            let Target::Flow { id, version } = request.target else {
                return Err(wrong_target(Flavor::Workflow, request.target));
            };
            let body = FlowLaunchRequest {
                flow_id: id.clone(),
                flow_version: version.clone(),
                input_data: request.inputs.clone(),
                name: Some(request.run_name.to_string()),
            };
            let launched = self.0.launch_flow(&body).await?;
            Ok(RemoteRun { remote_id: Some(launched.id), phase: RemotePhase::Queued, remote_status: "LAUNCHED".into() })
        })
    }

    fn status<'a>(&'a self, remote_id: &'a str) -> BoxFuture<'a, Result<RemoteRun, ApiError>> {
        Box::pin(async move {
            let exec = self.0.get_flow_execution(remote_id).await?;
            Ok(RemoteRun { remote_id: Some(exec.id.clone()), phase: workflow_phase(&exec), remote_status: exec.status })
        })
    }
}
