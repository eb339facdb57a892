//! What operators do to runs, as library calls: requeue dead-lettered runs,
//! requeue dead webhooks, purge. The CLI only parses and prints; a
//! dashboard or an API calls the same functions.

use std::time::Duration;

use gcrun_model::RunId;
use gcrun_queue::{Job, PushError, Queues};
use gcrun_store::{DlqFilter, RunRecord, Store, StoreError, WebhookRequeue};

pub use crate::stats::Stats;

/// An operator's action failed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] PushError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Which runs an operator names: exactly these, or those matching a filter.
#[derive(Debug, Clone)]
pub enum Selection {
    Runs(Vec<RunId>),
    Matching(DlqFilter),
}

/// Who acts on runs (requeue, cancel), and why: recorded as the cause of
/// the transition the act brings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// The operator or client (a name, an operator token's name); empty:
    /// unnamed.
    pub by: String,
    pub reason: String,
}

impl Actor {
    /// The transition's cause: `<done> by <who>: <why>` (`requeued by
    /// alice: Genesys is back`). Both are the actor's own words, one line
    /// each, kept short.
    pub fn cause(&self, done: &str) -> String {
        let clean = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(200).collect::<String>();
        let by = if self.by.trim().is_empty() { "an operator".to_string() } else { clean(&self.by) };
        match clean(&self.reason) {
            r if r.is_empty() => format!("{done} by {by}"),
            r => format!("{done} by {by}: {r}"),
        }
    }
}

/// What an operator pauses: a whole queue (no worker leases its jobs), or
/// a hold on a flavor or one action (no new run of it is submitted; runs
/// already submitted go on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pause {
    Queue(String),
    Hold(gcrun_store::HoldScope),
}

impl Pause {
    /// `queue submit|poll|webhook`, `flavor runs|execute|workflow`, `action <id>`.
    pub fn parse(kind: &str, value: &str) -> Result<Self, String> {
        match kind {
            "queue" if ["submit", "poll", "webhook"].contains(&value) => Ok(Pause::Queue(value.to_string())),
            "queue" => Err(format!("no queue named `{value}` (submit, poll or webhook)")),
            "flavor" => value.parse().map(|f| Pause::Hold(gcrun_store::HoldScope::Flavor(f))),
            "action" | "flow" | "target" if !value.trim().is_empty() => {
                Ok(Pause::Hold(gcrun_store::HoldScope::Target(value.trim().to_string())))
            }
            _ => Err(format!("pause what? `queue`, `flavor` or `action`, not `{kind}`")),
        }
    }
}

impl std::fmt::Display for Pause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pause::Queue(q) => write!(f, "queue:{q}"),
            Pause::Hold(scope) => write!(f, "{scope}"),
        }
    }
}

/// A pause standing now, as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseView {
    /// `queue:submit`, `flavor:runs`, `target:<id>`.
    pub what: String,
    pub by: String,
    pub reason: String,
    pub since: String,
}

/// What a resume did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resumed {
    /// It was paused.
    pub was_paused: bool,
    /// Parked runs whose submit jobs were pushed again.
    pub unparked: usize,
}

/// What a cancel found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancel {
    /// Asked for: the run's next step (pushed now) ends it `cancelled`,
    /// releasing its slot and sending its webhook.
    Requested,
    /// The run had already ended, in this status.
    Ended(gcrun_model::RunStatus),
}

/// The operator side of gcrun over one store and its queues.
#[derive(Debug, Clone)]
pub struct Operator {
    store: Store,
    queues: Queues,
}

impl Operator {
    pub fn new(store: Store, queues: Queues) -> Self {
        Self { store, queues }
    }

    /// The store, for reads (listings, a run's detail).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The same Redis, acting on `tenant`'s runs and queues.
    pub fn for_tenant(&self, tenant: &gcrun_model::Tenant) -> Self {
        Self { store: self.store.of_tenant(tenant), queues: self.queues.of_tenant(tenant) }
    }

    async fn select(&self, selection: &Selection) -> Result<Vec<RunId>, StoreError> {
        Ok(match selection {
            Selection::Runs(ids) => ids.clone(),
            Selection::Matching(filter) => self.store.dlq_list(filter).await?.into_iter().map(|r| r.id).collect(),
        })
    }

    /// Takes dead-lettered runs back to `accepted` with a fresh deadline
    /// and pushes their submit jobs, each run's move and job in one script
    /// (a failed push can no longer leave a run out of the dead-letter set
    /// with no job). A run that was submitted before keeps its remote id
    /// and resumes polling; it is never submitted twice. Returns the runs
    /// requeued, in order. A secure run whose inputs were erased at its end
    /// cannot be requeued: named by id it is an error, matched by a filter
    /// it is skipped.
    pub async fn requeue_runs(&self, selection: &Selection, now_ms: u64) -> Result<Vec<RunRecord>, OperatorError> {
        self.requeue_runs_by(selection, now_ms, &Actor::default()).await
    }

    /// [`requeue_runs`](Self::requeue_runs), recording who requeued them
    /// and why in each run's transition and the audit stream.
    pub async fn requeue_runs_by(
        &self,
        selection: &Selection,
        now_ms: u64,
        by: &Actor,
    ) -> Result<Vec<RunRecord>, OperatorError> {
        let mut out = Vec::new();
        let mut conn = self.store.connection();
        let cause = by.cause("requeued");
        for id in self.select(selection).await? {
            let write = match self.store.prepare_requeue_because(&id, now_ms, &cause).await {
                // A filter skips what cannot be requeued (a secure run whose
                // inputs were erased); a run named by id says why it cannot.
                Err(StoreError::Refused(why)) if matches!(selection, Selection::Matching(_)) => {
                    tracing::warn!(run = %id, "{why}");
                    continue;
                }
                other => other?,
            };
            let job = Job::Submit { run: id, after: Duration::ZERO };
            match crate::atomic::write_then_push(&mut conn, &self.queues, &write, &job).await? {
                gcrun_store::WriteOutcome::Applied => {}
                _ => {
                    let now =
                        self.store.get_run(&id).await?.map(|r| r.status).unwrap_or(gcrun_model::RunStatus::Accepted);
                    return Err(StoreError::Illegal(gcrun_model::IllegalTransition {
                        from: now,
                        to: gcrun_model::RunStatus::Accepted,
                    })
                    .into());
                }
            }
            self.store.forget_dead_webhook(&id).await?;
            let record = self.store.get_run(&id).await?.ok_or_else(|| StoreError::NotFound(id.to_string()))?;
            out.push(record);
        }
        Ok(out)
    }

    /// Cancels a run that has not ended: records who asked and why, and
    /// pushes a submit job in the same script; that step (or the next poll,
    /// whichever comes first) ends the run `cancelled` through the worker's
    /// own ending, so its permit is released and its webhook owed as for
    /// any end. Polling stops there. A call already made to Genesys is not
    /// undone (the API reference documents no way to stop a remote run).
    /// `NotFound` when there is no such run.
    pub async fn cancel(&self, id: &RunId, by: &Actor) -> Result<Cancel, OperatorError> {
        let cause = by.cause("cancelled");
        let mut conn = self.store.connection();
        // The run may move on between the read and the guarded write (a
        // step advancing it): read again, a few times.
        for _ in 0..5 {
            let rec = self.store.get_run(id).await?.ok_or_else(|| StoreError::NotFound(id.to_string()))?;
            if rec.status.is_terminal() {
                return Ok(Cancel::Ended(rec.status));
            }
            let write = self.store.prepare_cancel_request(id, rec.status, &cause);
            let job = Job::Submit { run: *id, after: Duration::ZERO };
            match crate::atomic::write_then_push(&mut conn, &self.queues, &write, &job).await? {
                gcrun_store::WriteOutcome::Applied => return Ok(Cancel::Requested),
                gcrun_store::WriteOutcome::Gone => return Err(StoreError::NotFound(id.to_string()).into()),
                _ => continue,
            }
        }
        Err(StoreError::Refused(format!("run {id} kept moving; try the cancel again")).into())
    }

    /// Pauses `what`, recording who and why. Nothing is lost: a paused
    /// queue's jobs wait in Redis; a held run is parked before anything
    /// reaches Genesys and comes back on resume.
    pub async fn pause(&self, what: &Pause, by: &Actor, now_ms: u64) -> Result<(), OperatorError> {
        let note = serde_json::json!({
            "by": if by.by.trim().is_empty() { "an operator" } else { by.by.trim() },
            "reason": by.reason.trim(), "atMs": now_ms,
        })
        .to_string();
        match what {
            Pause::Queue(q) => self.queues.pause(q, &note).await?,
            Pause::Hold(scope) => self.store.hold(scope, &note).await?,
        }
        tracing::info!(paused = %what, by = %by.by, "paused by an operator");
        Ok(())
    }

    /// Resumes `what`. A lifted hold pushes the submit jobs of the runs it
    /// parked again, a slice at a time (as many as were parked when the
    /// resume began: a run another hold still stops parks again).
    pub async fn resume(&self, what: &Pause) -> Result<Resumed, OperatorError> {
        let (was_paused, mut unparked) = match what {
            Pause::Queue(q) => (self.queues.resume(q).await?, 0),
            Pause::Hold(scope) => (self.store.release_hold(scope).await?, 0),
        };
        if let Pause::Hold(_) = what {
            let mut left = self.store.parked_len().await? as usize;
            while left > 0 {
                let slice = self.store.parked_slice(left.min(500)).await?;
                if slice.is_empty() {
                    break;
                }
                // Pushed, then taken off the set: a crash in between pushes
                // twice (the steps absorb it) rather than losing a run.
                self.queues.push_submits(&slice).await?;
                self.store.unpark(&slice).await?;
                unparked += slice.len();
                left = left.saturating_sub(slice.len());
            }
        }
        tracing::info!(resumed = %what, unparked, "resumed by an operator");
        Ok(Resumed { was_paused, unparked })
    }

    /// Every pause standing now.
    pub async fn pauses(&self) -> Result<Vec<PauseView>, OperatorError> {
        let view = |what: String, note: &str| {
            let j: serde_json::Value = serde_json::from_str(note).unwrap_or_default();
            let text = |k: &str| j.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            PauseView {
                what,
                by: text("by"),
                reason: text("reason"),
                since: j
                    .get("atMs")
                    .and_then(|v| v.as_u64())
                    .map(gcrun_model::timestamp::rfc3339_ms)
                    .unwrap_or_default(),
            }
        };
        let mut out = Vec::new();
        for q in self.queues.names.all() {
            if let Some(note) = self.queues.depth(q).await?.paused {
                out.push(view(format!("queue:{q}"), &note));
            }
        }
        for (scope, note) in self.store.holds().await? {
            out.push(view(scope, &note));
        }
        Ok(out)
    }

    /// Runs parked by holds now.
    pub async fn parked(&self) -> Result<u64, OperatorError> {
        Ok(self.store.parked_len().await?)
    }

    /// Runs whose webhook is dead, with the reason.
    pub async fn dead_webhooks(&self) -> Result<Vec<(RunId, String)>, OperatorError> {
        let mut out = Vec::new();
        for id in self.store.webhook_dlq().await? {
            let reason = self.store.get_run(&id).await?.and_then(|r| r.webhook.last_error).unwrap_or_default();
            out.push((id, reason));
        }
        Ok(out)
    }

    /// Sends dead webhooks again: each goes back to `pending` under a new
    /// epoch (so its delivery jobs get ids the queue has not seen) and its
    /// first delivery job is pushed. Returns the runs requeued; ids whose
    /// webhook is not dead (or whose run is gone) are skipped.
    pub async fn requeue_webhooks(&self, ids: &[RunId]) -> Result<Vec<RunId>, OperatorError> {
        let mut out = Vec::new();
        for id in ids {
            match self.store.webhook_requeue(id).await {
                Ok(WebhookRequeue::Requeued { .. }) => {}
                Ok(WebhookRequeue::NotDead) | Err(StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            }
            let Some(rec) = self.store.get_run(id).await? else { continue };
            let job =
                Job::Webhook { run: *id, generation: rec.webhook_generation(), attempt: 0, after: Duration::ZERO };
            self.queues.push(job).await?;
            out.push(*id);
        }
        Ok(out)
    }

    /// The runs an operator's requeue or purge would touch, without
    /// touching them (`--dry-run`).
    pub async fn preview(&self, selection: &Selection) -> Result<Vec<RunRecord>, OperatorError> {
        Ok(match selection {
            Selection::Matching(filter) => self.store.dlq_list(filter).await?,
            Selection::Runs(ids) => self.store.get_runs(ids).await?.into_iter().flatten().collect(),
        })
    }

    /// Deletes these runs if they are still dead-lettered (listed, then
    /// confirmed); returns how many were.
    pub async fn purge_ids(&self, ids: &[RunId]) -> Result<usize, OperatorError> {
        Ok(self.store.dlq_purge_ids(ids).await?)
    }

    /// Where gcrun stands now: see [`Stats`].
    pub async fn stats(&self, now_ms: u64, window: Duration, sample: usize) -> Result<Stats, OperatorError> {
        crate::stats::gather(self, &self.store, &self.queues, now_ms, window, sample).await
    }

    /// Deletes dead-lettered runs matching `filter` for good; returns how many.
    pub async fn purge(&self, filter: &DlqFilter) -> Result<usize, OperatorError> {
        Ok(self.store.dlq_purge(filter).await?)
    }
}
