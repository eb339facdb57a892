//! The apalis handlers of the three job payloads: parse the run id, drive
//! the step, and turn its outcome into what apalis understands.

use std::sync::Arc;

use apalis::prelude::{AbortError, BoxDynError, Data};
use gcrun_model::RunId;
use gcrun_queue::{JobHandle, PollJob, SubmitJob, WebhookJob};
use gcrun_store::StoreError;
use tracing::Instrument;

use crate::interpret::{Deps, Outcome, StepError};

fn parse_run(raw: &str) -> Result<RunId, BoxDynError> {
    raw.parse::<RunId>()
        .map_err(|e| AbortError::new(format!("malformed job: run id `{raw}` is not a UUID: {e}")).into())
}

/// A step's outcome for apalis: done, or aborted into the queue's dead set
/// with the reason as its result. Redis errors are returned as they are,
/// so the queue tries the job again.
fn conclude(outcome: Result<Outcome, StepError>) -> Result<(), BoxDynError> {
    let outcome = match outcome {
        // A record that is not what gcrun wrote will not get better by retrying.
        Err(StepError::Store(StoreError::Corrupt { run, detail })) => {
            Outcome::Abort(format!("run {run} has a corrupt record: {detail}"))
        }
        other => other?,
    };
    match outcome {
        Outcome::Done(_) => Ok(()),
        Outcome::Abort(reason) => {
            tracing::warn!(%reason, "job aborted to the dead set");
            // Top-level, not wrapped: apalis retries a wrapped AbortError.
            Err(AbortError::new(reason).into())
        }
    }
}

pub(crate) async fn submit_job(
    job: SubmitJob,
    deps: Data<Arc<Deps>>,
    handle: Data<JobHandle>,
) -> Result<(), BoxDynError> {
    let run = parse_run(&job.run)?;
    let span = tracing::info_span!("submit", %run);
    conclude(deps.submit(run, Some(&handle)).instrument(span).await)
}

pub(crate) async fn poll_job(job: PollJob, deps: Data<Arc<Deps>>, handle: Data<JobHandle>) -> Result<(), BoxDynError> {
    let run = parse_run(&job.run)?;
    let span = tracing::info_span!("poll", %run, attempt = job.attempt);
    conclude(deps.poll(run, job.attempt, Some(&handle)).instrument(span).await)
}

pub(crate) async fn webhook_job(
    job: WebhookJob,
    deps: Data<Arc<Deps>>,
    handle: Data<JobHandle>,
) -> Result<(), BoxDynError> {
    let run = parse_run(&job.run)?;
    let span = tracing::info_span!("webhook", %run, attempt = job.attempt);
    conclude(deps.webhook(run, job.attempt, Some(&handle)).instrument(span).await)
}
