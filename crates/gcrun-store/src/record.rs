//! A run as stored: one Redis hash per run, plus its history list.

use std::collections::HashMap;

use gcrun_model::{Flavor, RequestLimits, RunError, RunId, RunRequest, RunStatus, Transition, WebhookStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::StoreError;

/// The delivery state of a run's webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookState {
    pub status: Option<WebhookStatus>,
    pub attempts: u32,
    /// Bumped by each operator requeue of a dead webhook, so the new
    /// delivery chain gets job ids of its own.
    pub epoch: u32,
    pub last_error: Option<String>,
    pub delivered_ms: Option<u64>,
}

/// One run's record, as the store and the steps see it. APIs render a
/// [`RunView`](crate::view::RunView) instead: the storage shape is not a
/// public contract.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: RunId,
    pub status: RunStatus,
    pub flavor: Flavor,
    /// Action or flow id.
    pub target: String,
    /// The request as accepted. A stored request that no longer parses
    /// makes the whole record corrupt.
    pub request: RunRequest,
    pub remote_id: Option<String>,
    pub remote_status: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub submitted_ms: Option<u64>,
    pub completed_ms: Option<u64>,
    /// After this the run is `timed_out`.
    pub deadline_ms: u64,
    /// Polls made so far (drives the backoff schedule).
    pub poll_attempts: u32,
    /// Transient failures retried so far (any stage).
    pub retries: u32,
    /// The last error, with its correlation id when Genesys sent one.
    pub last_error: Option<String>,
    pub correlation_id: Option<String>,
    pub outputs: Option<Value>,
    /// Why a failed, rejected or dead run did not succeed.
    pub error: Option<RunError>,
    pub webhook: WebhookState,
    /// The submit job has been pushed (see `Producer`).
    pub enqueued: bool,
    /// The ingest client that sent the run (`None`: the library or CLI).
    pub client: Option<String>,
    /// The request's digest as it was accepted (see
    /// [`Origin`](crate::Origin)).
    pub digest: Option<String>,
    /// The upstream's correlation id, when it sent one.
    pub upstream_correlation: Option<String>,
    /// A cancel was asked for, with its cause (who, why): the run's next
    /// step ends it `cancelled`.
    pub cancel_requested: Option<String>,
    /// An operator's hold that covers this run now (its scope and note),
    /// as the port that loaded the record found the holds; never stored.
    pub held: Option<String>,
    /// How long runs of this action usually take (ms), as the port that
    /// loaded the record has seen them end; never stored. The first poll
    /// is aimed just past it.
    pub expected_ms: Option<u64>,
    /// What the run's first poll was aimed at (ms after its submission),
    /// when it was aimed: what that poll then finds teaches the aim once
    /// per aim, however many runs were polled at it.
    pub first_poll_aim_ms: Option<u64>,
    /// The action is secure (its definition says so): its inputs and
    /// outputs are erased when the run ends unless the request asked to
    /// keep them, and never logged or sent unasked.
    pub secure: bool,
    /// Filled by [`Store::get_run_with_history`](crate::Store::get_run_with_history).
    pub transitions: Vec<Transition>,
    /// Failed attempts that were retried, oldest first; filled with the
    /// transitions.
    pub attempts: Vec<crate::runs::Attempt>,
}

impl RunRecord {
    /// How long the run took from acceptance to its end, if it ended.
    pub fn duration_ms(&self) -> Option<u64> {
        self.completed_ms.map(|c| c.saturating_sub(self.created_ms))
    }

    /// A run as [`Store::create_run`](crate::Store::create_run) records it:
    /// `accepted`, nothing done yet.
    pub fn accepted(id: RunId, request: &gcrun_model::RunRequest, now_ms: u64, deadline_ms: u64) -> Self {
        Self {
            id,
            status: RunStatus::Accepted,
            flavor: request.flavor(),
            target: request.target().id().to_string(),
            request: request.clone(),
            remote_id: None,
            remote_status: None,
            created_ms: now_ms,
            updated_ms: now_ms,
            submitted_ms: None,
            completed_ms: None,
            deadline_ms,
            poll_attempts: 0,
            retries: 0,
            last_error: None,
            correlation_id: None,
            outputs: None,
            error: None,
            webhook: WebhookState { status: None, attempts: 0, epoch: 0, last_error: None, delivered_ms: None },
            enqueued: false,
            client: None,
            digest: None,
            upstream_correlation: None,
            cancel_requested: None,
            held: None,
            expected_ms: None,
            first_poll_aim_ms: None,
            secure: false,
            transitions: Vec::new(),
            attempts: Vec::new(),
        }
    }

    /// The run's data is a secure action's and it did not ask to keep it:
    /// erase it at the end, send none of it.
    pub fn withholds_secure_data(&self) -> bool {
        self.secure && !self.request.include_secure_data()
    }

    /// The generation of the run's poll chain: its deadline, which an
    /// operator's requeue renews, so a requeued run's polls get job ids of
    /// their own.
    pub fn poll_generation(&self) -> u64 {
        self.deadline_ms
    }

    /// The generation of the run's webhook chain: when the run ended, plus
    /// the number of operator requeues of its webhook.
    pub fn webhook_generation(&self) -> u64 {
        self.completed_ms.unwrap_or(self.updated_ms).wrapping_add(u64::from(self.webhook.epoch))
    }

    /// The record as it is after a write of `update` (with a move to `to`)
    /// at `now_ms`: what the store's scripts do, in memory. Lets a step go
    /// on with what it just wrote without reading it back, and lets
    /// `run-now` drive the steps with no Redis at all.
    pub fn apply(&mut self, to: Option<RunStatus>, update: &RunUpdate, now_ms: u64) {
        if let Some(to) = to {
            self.status = to;
            self.updated_ms = now_ms;
            if to.is_terminal() && update.completed_ms.is_none() {
                self.completed_ms = Some(now_ms);
            }
        }
        let u = update.clone();
        macro_rules! set {
            ($($field:ident => $target:expr),* $(,)?) => {
                $(if let Some(v) = u.$field { $target = v; })*
            };
        }
        if let Some(request) = u.request.clone() {
            self.request = request;
        }
        if u.clear_outputs {
            self.outputs = None;
        }
        if let Some(secure) = u.secure {
            self.secure = secure;
        }
        if u.clear_webhook {
            self.webhook.status = None;
            self.webhook.last_error = None;
            self.webhook.delivered_ms = None;
        }
        set!(
            poll_attempts => self.poll_attempts,
            retries => self.retries,
            deadline_ms => self.deadline_ms,
            webhook_attempts => self.webhook.attempts,
            enqueued => self.enqueued,
        );
        macro_rules! set_some {
            ($($field:ident => $target:expr),* $(,)?) => {
                $(if let Some(v) = u.$field { $target = Some(v); })*
            };
        }
        set_some!(
            remote_id => self.remote_id,
            remote_status => self.remote_status,
            submitted_ms => self.submitted_ms,
            completed_ms => self.completed_ms,
            last_error => self.last_error,
            correlation_id => self.correlation_id,
            outputs => self.outputs,
            error => self.error,
            webhook_status => self.webhook.status,
            webhook_last_error => self.webhook.last_error,
            webhook_delivered_ms => self.webhook.delivered_ms,
            first_poll_aim_ms => self.first_poll_aim_ms,
        );
    }

    pub(crate) fn from_hash(id: &str, h: &HashMap<String, String>) -> Result<Self, StoreError> {
        let corrupt = |detail: String| StoreError::Corrupt { run: id.to_string(), detail };
        let get = |k: &str| h.get(k).filter(|v| !v.is_empty()).cloned();
        let num = |k: &str| -> Result<Option<u64>, StoreError> {
            get(k).map(|v| v.parse::<u64>().map_err(|e| corrupt(format!("{k}: {e}")))).transpose()
        };
        let json = |k: &str| -> Result<Option<Value>, StoreError> {
            get(k).map(|v| serde_json::from_str(&v).map_err(|e| corrupt(format!("{k}: {e}")))).transpose()
        };
        let required = |k: &str| get(k).ok_or_else(|| corrupt(format!("missing field {k}")));
        Ok(Self {
            id: required("id")?.parse().map_err(|e| corrupt(format!("id: {e}")))?,
            status: required("status")?.parse().map_err(corrupt)?,
            flavor: required("flavor")?.parse().map_err(corrupt)?,
            target: required("target")?,
            request: RunRequest::parse(&json("request")?.unwrap_or(Value::Null), &RequestLimits::stored())
                .map_err(|v| corrupt(format!("request no longer parses: {v}")))?,
            remote_id: get("remote_id"),
            remote_status: get("remote_status"),
            created_ms: num("created_ms")?.unwrap_or(0),
            updated_ms: num("updated_ms")?.unwrap_or(0),
            submitted_ms: num("submitted_ms")?,
            completed_ms: num("completed_ms")?,
            deadline_ms: num("deadline_ms")?.unwrap_or(u64::MAX),
            poll_attempts: num("poll_attempts")?.unwrap_or(0) as u32,
            retries: num("retries")?.unwrap_or(0) as u32,
            last_error: get("last_error"),
            correlation_id: get("correlation_id"),
            outputs: json("outputs")?,
            error: json("error")?
                .map(serde_json::from_value::<RunError>)
                .transpose()
                .map_err(|e| corrupt(format!("error: {e}")))?,
            webhook: WebhookState {
                status: get("webhook_status")
                    .map(|s| serde_json::from_value(Value::String(s)))
                    .transpose()
                    .map_err(|e| corrupt(format!("webhook_status: {e}")))?,
                attempts: num("webhook_attempts")?.unwrap_or(0) as u32,
                epoch: num("webhook_epoch")?.unwrap_or(0) as u32,
                last_error: get("webhook_last_error"),
                delivered_ms: num("webhook_delivered_ms")?,
            },
            enqueued: get("enqueued").is_some_and(|v| v == "1"),
            client: get("client"),
            digest: get("digest"),
            upstream_correlation: get("upstream_correlation"),
            cancel_requested: get("cancel_requested"),
            held: None,
            expected_ms: None,
            first_poll_aim_ms: num("first_poll_aim_ms")?,
            secure: get("secure").is_some_and(|v| v == "1"),
            transitions: Vec::new(),
            attempts: Vec::new(),
        })
    }
}

/// Fields written together with a transition (or alone, with
/// [`Store::update`](crate::Store::update)). `None` leaves a field as is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunUpdate {
    pub remote_id: Option<String>,
    pub remote_status: Option<String>,
    pub submitted_ms: Option<u64>,
    pub completed_ms: Option<u64>,
    pub poll_attempts: Option<u32>,
    pub retries: Option<u32>,
    pub last_error: Option<String>,
    pub correlation_id: Option<String>,
    pub outputs: Option<Value>,
    pub error: Option<RunError>,
    pub webhook_status: Option<WebhookStatus>,
    pub webhook_attempts: Option<u32>,
    pub webhook_last_error: Option<String>,
    pub webhook_delivered_ms: Option<u64>,
    pub enqueued: Option<bool>,
    pub deadline_ms: Option<u64>,
    /// Until when a worker holds the right to submit (0 releases it).
    pub submit_claim_until: Option<u64>,
    /// When the Genesys call was about to be made (0: not sent, or known
    /// not to have run).
    pub submit_sent_ms: Option<u64>,
    /// What the first poll is aimed at (see [`RunRecord::first_poll_aim_ms`]).
    pub first_poll_aim_ms: Option<u64>,
    /// Forget the webhook's state (an operator's requeue: the run will
    /// end again and owe a new webhook).
    pub clear_webhook: bool,
    /// The action is secure (read from its definition).
    pub secure: Option<bool>,
    /// Replace the stored request (a secure run's, with its inputs erased).
    pub request: Option<RunRequest>,
    /// Erase the stored outputs.
    pub clear_outputs: bool,
}

/// Named updates, so that a step says what it records rather than
/// spelling a struct literal. Each returns the update for chaining.
impl RunUpdate {
    /// A secure run's end, when it did not ask to keep its data: the
    /// stored request loses its inputs, the outputs are not kept, and
    /// Genesys's error text (which may echo the data) is withheld, codes,
    /// paths and correlation ids kept. `reason` replaces the last error.
    pub fn withhold_secure_data(mut self, record: &RunRecord, reason: impl Into<String>) -> Self {
        const WITHHELD: &str = "withheld (secure action)";
        self.request = Some(record.request.without_inputs());
        self.outputs = None;
        self.clear_outputs = true;
        self.last_error = Some(reason.into());
        self.error = self.error.or_else(|| record.error.clone()).map(|mut e| {
            e.message = WITHHELD.into();
            for v in &mut e.violations {
                v.message = WITHHELD.into();
            }
            e
        });
        self.secure = Some(true);
        self
    }

    /// An update that records a failure's reason.
    pub fn failure(reason: impl Into<String>) -> Self {
        Self { last_error: Some(reason.into()), ..Self::default() }
    }

    /// The correlation id Genesys sent with an answer.
    pub fn correlated(mut self, correlation_id: Option<String>) -> Self {
        self.correlation_id = correlation_id;
        self
    }

    /// The structured error a run ends with.
    pub fn error(mut self, error: RunError) -> Self {
        self.error = Some(error);
        self
    }

    pub fn outputs(mut self, outputs: Value) -> Self {
        self.outputs = Some(outputs);
        self
    }

    pub fn remote_status(mut self, status: impl Into<String>) -> Self {
        self.remote_status = Some(status.into());
        self
    }

    /// One more transient failure retried.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    pub fn poll_attempts(mut self, attempts: u32) -> Self {
        self.poll_attempts = Some(attempts);
        self
    }

    /// Gives the submit claim back (before any call was made: a denied
    /// permit), so another copy may submit at once. It never touches the
    /// sent mark: a copy that made no call must not clear the mark of one
    /// that did.
    pub fn release_claim(mut self) -> Self {
        self.submit_claim_until = Some(0);
        self
    }

    /// After this copy's own call was answered with a refusal that shows it
    /// did not run (a 429, a 503): the claim back and the sent mark
    /// cleared, so the next try may call again.
    pub fn call_not_run(mut self) -> Self {
        self.submit_claim_until = Some(0);
        self.submit_sent_ms = Some(0);
        self
    }

    /// The remote run now exists (or the synchronous answer arrived).
    pub fn submitted(remote_id: Option<String>, remote_status: String, at_ms: u64) -> Self {
        Self { remote_id, remote_status: Some(remote_status), submitted_ms: Some(at_ms), ..Self::default() }
    }

    /// The webhook is owed: pending, no attempts yet.
    pub fn webhook_owed(mut self) -> Self {
        self.webhook_status = Some(WebhookStatus::Pending);
        self.webhook_attempts = Some(0);
        self
    }

    pub fn completed_at(mut self, at_ms: u64) -> Self {
        self.completed_ms = Some(at_ms);
        self
    }

    /// The producer pushed the run's submit job.
    pub fn enqueued() -> Self {
        Self { enqueued: Some(true), ..Self::default() }
    }

    pub(crate) fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut put = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                out.push((k, v));
            }
        };
        put("remote_id", self.remote_id.clone());
        put("remote_status", self.remote_status.clone());
        put("submitted_ms", self.submitted_ms.map(|v| v.to_string()));
        put("completed_ms", self.completed_ms.map(|v| v.to_string()));
        put("poll_attempts", self.poll_attempts.map(|v| v.to_string()));
        put("retries", self.retries.map(|v| v.to_string()));
        put("last_error", self.last_error.clone());
        put("correlation_id", self.correlation_id.clone());
        put("outputs", self.outputs.as_ref().map(Value::to_string));
        put("error", self.error.as_ref().and_then(|e| serde_json::to_string(e).ok()));
        put(
            "webhook_status",
            self.webhook_status.and_then(|s| serde_json::to_value(s).ok()).and_then(|v| v.as_str().map(str::to_owned)),
        );
        put("webhook_attempts", self.webhook_attempts.map(|v| v.to_string()));
        put("webhook_last_error", self.webhook_last_error.clone());
        put("webhook_delivered_ms", self.webhook_delivered_ms.map(|v| v.to_string()));
        put("enqueued", self.enqueued.map(|v| if v { "1".into() } else { "0".into() }));
        put("deadline_ms", self.deadline_ms.map(|v| v.to_string()));
        put("submit_claim_until", self.submit_claim_until.map(|v| v.to_string()));
        put("submit_sent_ms", self.submit_sent_ms.map(|v| v.to_string()));
        put("first_poll_aim_ms", self.first_poll_aim_ms.map(|v| v.to_string()));
        put("secure", self.secure.map(|v| if v { "1".into() } else { "0".into() }));
        put("request", self.request.as_ref().map(|r| r.to_value().to_string()));
        if self.clear_outputs {
            out.push(("outputs", String::new()));
        }
        if self.clear_webhook {
            // Empty fields read back as absent.
            for field in ["webhook_status", "webhook_last_error", "webhook_delivered_ms"] {
                out.push((field, String::new()));
            }
        }
        out
    }
}
