//! The steps with no Redis: a [`Port`] that keeps one run's record in
//! memory, for `gcrun run-now`. It drives the very same decisions as a
//! worker (contract check, submit, polls with backoff, unknown outcomes),
//! so what `run-now` shows is what the queue would do, minus durability,
//! the shared limiter and webhooks.
//!
//! Between steps it waits for the next job's delay in process: that wait
//! is the point of an interactive command, and nothing here survives a
//! restart anyway.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use gcrun_genesys::GenesysClient;
use gcrun_model::{Jitter, RunId, RunRequest, Transition};
use gcrun_queue::Job;
use gcrun_store::{Claim, Counter, Denied, RunRecord};

use crate::config::WorkerConfig;
use crate::interpret::{self, Outcome, Port, StepError, now_ms};
use crate::metrics::Metrics;
use crate::step::submit::Contract;
use crate::step::{Act, Write};
use crate::webhook::{Delivery, Outgoing};

/// One run, in memory.
#[derive(Debug)]
pub struct Local {
    genesys: GenesysClient,
    policy: WorkerConfig,
    metrics: Metrics,
    jitter: Mutex<Jitter>,
    record: Mutex<RunRecord>,
    jobs: Mutex<VecDeque<Job>>,
}

impl Local {
    fn record(&self) -> std::sync::MutexGuard<'_, RunRecord> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Port for Local {
    fn policy(&self) -> &WorkerConfig {
        &self.policy
    }

    fn genesys(&self) -> &GenesysClient {
        &self.genesys
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn with_jitter<T>(&self, f: impl FnOnce(&mut Jitter) -> T) -> T {
        f(&mut self.jitter.lock().unwrap_or_else(|p| p.into_inner()))
    }

    async fn load(&self, _id: &RunId, _with_history: bool) -> Result<Option<RunRecord>, StepError> {
        Ok(Some(self.record().clone()))
    }

    async fn contract(&self, action_id: &str, _now: u64) -> Result<Contract, StepError> {
        Ok(crate::definitions::fetch_contract(&self.genesys, &self.metrics, action_id).await)
    }

    async fn claim(&self, _rec: &RunRecord, _hold: Duration) -> Result<Claim, StepError> {
        Ok(Claim::Claimed { token: "run-now".into() })
    }

    async fn renew_claim(&self, _rec: &RunRecord, _token: &str, _hold: Duration) -> Result<bool, StepError> {
        Ok(true)
    }

    async fn mark_sent(&self, _rec: &RunRecord, _token: &str, _hold: Duration) -> Result<bool, StepError> {
        Ok(true)
    }

    async fn permit(&self, _rec: &RunRecord) -> Result<Result<(), (Duration, Denied)>, StepError> {
        Ok(Ok(()))
    }

    async fn quarantine(&self, id: &RunId, reason: &str, _now: u64) -> Result<Outcome, StepError> {
        Ok(Outcome::Abort(format!("run {id}: {reason}")))
    }

    async fn deliver(&self, _out: &Outgoing, _now: u64) -> Delivery {
        Delivery::Dead("run-now sends no webhooks".into())
    }

    async fn apply(
        &self,
        _rec: &RunRecord,
        act: &Act,
        now: u64,
        _job: Option<&gcrun_queue::JobHandle>,
    ) -> Result<bool, StepError> {
        let mut rec = self.record();
        let counter = |c: Counter| match c {
            Counter::Poll => rec.poll_attempts,
            Counter::Retries => rec.retries,
        };
        let applied = match &act.write {
            Write::Nothing | Write::ReleaseClaim { .. } | Write::Webhook { .. } => true,
            Write::Advance { counter: c, expected, status, .. } => counter(*c) == *expected && rec.status == *status,
            Write::Transition { from, to, guard, .. } => {
                rec.status == *from && from.can_become(*to) && guard.is_none_or(|(c, n)| counter(c) == n)
            }
        };
        if applied {
            if let Write::Transition { from, to, cause, .. } = &act.write {
                rec.transitions.push(Transition { from: Some(*from), to: *to, at_ms: now, cause: cause.clone() });
            }
            crate::step::mirror(&mut rec, &act.write, now);
        }
        if applied {
            self.jobs.lock().unwrap_or_else(|p| p.into_inner()).extend(act.jobs.iter().copied());
        }
        Ok(applied)
    }
}

/// Runs `request` to its end in this process and returns the final record
/// (with its transitions). `progress` sees the record after every step.
pub async fn run_now(
    genesys: GenesysClient,
    policy: WorkerConfig,
    request: &RunRequest,
    deadline: Duration,
    progress: impl Fn(&RunRecord),
) -> Result<RunRecord, StepError> {
    let now = now_ms();
    let id = RunId::new();
    let mut record = RunRecord::accepted(id, request, now, now + deadline.as_millis() as u64);
    record.transitions.push(Transition { from: None, to: record.status, at_ms: now, cause: "accepted".into() });
    let local = Local {
        genesys,
        policy,
        metrics: Metrics::new(),
        jitter: Mutex::new(Jitter::from_entropy()),
        record: Mutex::new(record),
        jobs: Mutex::new(VecDeque::from([Job::Submit { run: id, after: Duration::ZERO }])),
    };
    loop {
        let next = local.jobs.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        let Some(job) = next else { break };
        tokio::time::sleep(job.after()).await;
        let outcome = match job {
            Job::Submit { .. } => interpret::drive_submit(&local, id, None).await?,
            Job::Poll { attempt, .. } => interpret::drive_poll(&local, id, attempt, None).await?,
            Job::Webhook { attempt, .. } => interpret::drive_webhook(&local, id, attempt, None).await?,
        };
        if let Outcome::Abort(reason) = outcome {
            tracing::warn!(%reason, "step aborted");
            break;
        }
        progress(&local.record());
    }
    Ok(local.record().clone())
}
