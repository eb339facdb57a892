//! Creating runs, reading them, and moving them through their lifecycle.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use gcrun_model::{RunId, RunRequest, RunStatus, Transition};
use redis::Script;

use crate::record::{RunRecord, RunUpdate};
use crate::write::{PreparedWrite, WriteKind, WriteOutcome};
use crate::{Store, StoreError};

// One script per operation; each `.lua` file names its KEYS and ARGV.
static CREATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(concat!(include_str!("../lua/create_run.lua"), "return s_create_run(KEYS, ARGV)\n")));
// The record writes are fragments (see `write.rs`): alone, each is run by
// a line that calls its function.
static TRANSITION: LazyLock<Script> =
    LazyLock::new(|| Script::new(concat!(include_str!("../lua/transition.lua"), "return s_transition(KEYS, ARGV)\n")));
static UPDATE: LazyLock<Script> =
    LazyLock::new(|| Script::new(concat!(include_str!("../lua/update.lua"), "return s_update(KEYS, ARGV)\n")));
static ADVANCE: LazyLock<Script> =
    LazyLock::new(|| Script::new(concat!(include_str!("../lua/advance.lua"), "return s_advance(KEYS, ARGV)\n")));
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/claim_submit.lua")));
static MARK: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/mark_submit.lua")));
static RECONCILE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/reconcile_expired.lua")));
static RENEW_CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/renew_claim.lua")));

/// The operator's requeue of `record`: the move and the fresh counters and
/// deadline (of the run's original length), so the run gets a whole new
/// chance; its remote id, if any, is kept (it resumes polling rather than
/// being submitted again).
fn requeue_move(record: &RunRecord, now_ms: u64) -> Result<(RunStatus, RunStatus, RunUpdate), StoreError> {
    let from = record.status;
    let to = from.requeue()?;
    if record.withholds_secure_data() && record.request.inputs().is_empty() {
        return Err(StoreError::Refused(format!(
            "run {} ran a secure action; its inputs were erased when it ended (as secure data is), so it cannot \
             be requeued: enqueue it again (includeSecureData: true keeps them)",
            record.id
        )));
    }
    let length = record.deadline_ms.saturating_sub(record.created_ms);
    let update = RunUpdate {
        poll_attempts: Some(0),
        retries: Some(0),
        webhook_attempts: Some(0),
        submit_claim_until: Some(0),
        submit_sent_ms: Some(0),
        deadline_ms: Some(now_ms.saturating_add(length)),
        enqueued: Some(false),
        clear_webhook: true,
        ..RunUpdate::default()
    };
    Ok((from, to, update))
}

/// Where a run request came from: the ingest client that sent it (its
/// idempotency keys are its own) and the request's digest (a resend under
/// the same key with another body is a conflict). Both `None` for the
/// library and the CLI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub client: Option<String>,
    pub digest: Option<String>,
    /// The upstream's correlation id (`X-Correlation-ID` or `traceparent`),
    /// kept with the run for its logs, audit entry and webhook. Not part of
    /// the digest: a retry under a new trace is the same request.
    pub correlation: Option<String>,
}

/// One failed attempt of a run that was retried (a transient submit or
/// poll failure), from its history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub stage: String,
    pub error: String,
    pub correlation_id: Option<String>,
    pub at_ms: u64,
}

/// What [`Store::claim_submit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller holds the claim, under this token (which
    /// [`Store::mark_submit_sent`] checks).
    Claimed { token: String },
    /// Another copy holds the claim for this much longer (by Redis's
    /// clock).
    Held { left: Duration },
    /// The run is no longer `validated`.
    NotValidated,
    /// A copy marked the call as sent at this time (ms) and its claim
    /// lapsed with the run still `validated`: the call may have run, and
    /// its answer was never recorded.
    SentWithoutAnswer { sent_ms: u64 },
}

/// Which step counter [`Store::advance`] moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Poll,
    /// Transient failures retried (a submit retry is one step of its chain).
    Retries,
}

impl Counter {
    pub fn field(self) -> &'static str {
        match self {
            Counter::Poll => "poll_attempts",
            Counter::Retries => "retries",
        }
    }
}

/// A status move, optionally guarded by a step counter.
#[derive(Debug, Clone, Copy)]
struct Move {
    from: RunStatus,
    to: RunStatus,
    guard: Option<(Counter, u32)>,
}

/// What [`Store::create_run`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// A new run was recorded.
    New(RunId),
    /// The idempotency key already named this run; nothing was written.
    Existing(RunId),
}

impl Created {
    pub fn run_id(self) -> RunId {
        match self {
            Created::New(id) | Created::Existing(id) => id,
        }
    }
}

/// What [`Store::transition`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionOutcome {
    Applied,
    /// The run was no longer in the expected state (a re-delivered or
    /// raced job): nothing was written; here is where it is.
    Stale(RunStatus),
}

impl Store {
    /// Records a new run in `accepted`, unless its idempotency key is
    /// already taken, in which case the existing run's id comes back.
    pub async fn create_run(
        &self,
        id: RunId,
        request: &RunRequest,
        now_ms: u64,
        deadline_ms: u64,
    ) -> Result<Created, StoreError> {
        let write = self.prepare_create(id, request, now_ms, deadline_ms, false);
        match write.run(&CREATE, &mut self.conn()).await? {
            WriteOutcome::Existing(other) => Ok(Created::Existing(other)),
            _ => Ok(Created::New(id)),
        }
    }

    /// [`create_run`](Self::create_run), prepared for a script that pushes
    /// the run's submit job with it (`enqueued`: the record says so from
    /// the start). Applied: created; `Existing(id)`: the idempotency key
    /// (or the id) was taken.
    pub fn prepare_create(
        &self,
        id: RunId,
        request: &RunRequest,
        now_ms: u64,
        deadline_ms: u64,
        enqueued: bool,
    ) -> PreparedWrite {
        self.prepare_create_from(id, request, now_ms, deadline_ms, enqueued, &Origin::default())
    }

    /// [`prepare_create`](Self::prepare_create) for a request from `origin`:
    /// an ingest client's idempotency keys are its own, and the record
    /// names the client and the request's digest.
    pub fn prepare_create_from(
        &self,
        id: RunId,
        request: &RunRequest,
        now_ms: u64,
        deadline_ms: u64,
        enqueued: bool,
        origin: &Origin,
    ) -> PreparedWrite {
        let idem_key = request.idempotency_key();
        let transition = Transition { from: None, to: RunStatus::Accepted, at_ms: now_ms, cause: "accepted".into() };
        let keys = vec![
            self.keys.run(&id),
            self.keys.history(&id),
            self.keys.audit(),
            self.keys.counts(),
            self.keys.idempotency_of(origin.client.as_deref(), idem_key.unwrap_or("-")),
            self.keys.open(),
            self.keys.runs(),
        ];
        let mut w = PreparedWrite::new(WriteKind::Create, id.to_string(), keys);
        w.arg(id)
            .arg(now_ms)
            .arg(self.config.audit_cap)
            .arg(if idem_key.is_some() { self.config.idempotency_ttl.as_millis() as u64 } else { 0 })
            .arg(serde_json::to_string(&transition).unwrap_or_default())
            .arg("accepted");
        let fields: [(&str, String); 10] = [
            ("id", id.to_string()),
            ("status", RunStatus::Accepted.as_str().into()),
            ("flavor", request.flavor().as_str().into()),
            ("target", request.target().id().into()),
            ("request", request.to_value().to_string()),
            ("created_ms", now_ms.to_string()),
            ("updated_ms", now_ms.to_string()),
            ("deadline_ms", deadline_ms.to_string()),
            ("poll_attempts", "0".into()),
            ("enqueued", if enqueued { "1".into() } else { "0".into() }),
        ];
        for (k, v) in fields {
            w.arg(k).arg(v);
        }
        for (k, v) in
            [("client", &origin.client), ("digest", &origin.digest), ("upstream_correlation", &origin.correlation)]
        {
            if let Some(v) = v {
                w.arg(k).arg(v);
            }
        }
        w
    }

    /// The operator's requeue (`rejected`/`dead` back to `accepted`),
    /// prepared for a script that pushes the submit job with it.
    pub async fn prepare_requeue(&self, id: &RunId, now_ms: u64) -> Result<PreparedWrite, StoreError> {
        self.prepare_requeue_because(id, now_ms, "requeued by an operator").await
    }

    /// [`prepare_requeue`](Self::prepare_requeue) with the cause its
    /// transition records (who requeued it, and why).
    pub async fn prepare_requeue_because(
        &self,
        id: &RunId,
        now_ms: u64,
        cause: &str,
    ) -> Result<PreparedWrite, StoreError> {
        let record = self.get_run(id).await?.ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let (from, to, update) = requeue_move(&record, now_ms)?;
        Ok(self.transition_write(id, Move { from, to, guard: None }, now_ms, cause, &update))
    }

    /// The run's record, or `None` when it does not exist (or expired).
    pub async fn get_run(&self, id: &RunId) -> Result<Option<RunRecord>, StoreError> {
        let h: HashMap<String, String> =
            redis::cmd("HGETALL").arg(self.keys.run(id)).query_async(&mut self.conn()).await?;
        if h.is_empty() {
            return Ok(None);
        }
        RunRecord::from_hash(&id.to_string(), &h).map(Some)
    }

    /// The record with its transitions.
    pub async fn get_run_with_history(&self, id: &RunId) -> Result<Option<RunRecord>, StoreError> {
        let Some(mut record) = self.get_run(id).await? else { return Ok(None) };
        (record.transitions, record.attempts) = self.history_and_attempts(id).await?;
        Ok(Some(record))
    }

    /// The run's transitions, oldest first.
    pub async fn history(&self, id: &RunId) -> Result<Vec<Transition>, StoreError> {
        Ok(self.history_and_attempts(id).await?.0)
    }

    /// The run's transitions and its failed attempts, each oldest first
    /// (one list holds both: they expire and are purged with the record).
    pub async fn history_and_attempts(&self, id: &RunId) -> Result<(Vec<Transition>, Vec<Attempt>), StoreError> {
        let raw: Vec<String> =
            redis::cmd("LRANGE").arg(self.keys.history(id)).arg(0).arg(-1).query_async(&mut self.conn()).await?;
        let corrupt =
            |e: serde_json::Error| StoreError::Corrupt { run: id.to_string(), detail: format!("history: {e}") };
        let (mut transitions, mut attempts) = (Vec::new(), Vec::new());
        for entry in &raw {
            let value: serde_json::Value = serde_json::from_str(entry).map_err(corrupt)?;
            if value.get("kind").and_then(|k| k.as_str()) == Some("attempt") {
                attempts.push(serde_json::from_value(value).map_err(corrupt)?);
            } else {
                transitions.push(serde_json::from_value(value).map_err(corrupt)?);
            }
        }
        Ok((transitions, attempts))
    }

    /// Moves `id` from `from` to `to`, writing `update` with it, appending to
    /// its history and the audit stream, keeping the counts and the
    /// dead-letter index right, and setting retention on terminal states,
    /// all in one script. Illegal transitions are refused before Redis.
    pub async fn transition(
        &self,
        id: &RunId,
        from: RunStatus,
        to: RunStatus,
        now_ms: u64,
        cause: &str,
        update: &RunUpdate,
    ) -> Result<TransitionOutcome, StoreError> {
        from.transition(to)?;
        self.apply_transition(id, Move { from, to, guard: None }, now_ms, cause, update).await
    }

    /// [`transition`](Self::transition), applied only if `counter` also
    /// still holds `expected`: a step of a counted chain (a poll that sees a
    /// new remote state) whose stale copy must not apply.
    #[allow(clippy::too_many_arguments)]
    pub async fn transition_guarded(
        &self,
        id: &RunId,
        from: RunStatus,
        to: RunStatus,
        guard: (Counter, u32),
        now_ms: u64,
        cause: &str,
        update: &RunUpdate,
    ) -> Result<TransitionOutcome, StoreError> {
        from.transition(to)?;
        self.apply_transition(id, Move { from, to, guard: Some(guard) }, now_ms, cause, update).await
    }

    /// The operator's requeue: `rejected`/`dead` back to `accepted`, with a
    /// fresh deadline of the run's original length and fresh counters, so
    /// the run gets a whole new chance (its remote id, if any, is kept: it
    /// resumes polling rather than being submitted again).
    pub(crate) async fn requeue_transition(
        &self,
        id: &RunId,
        record: &RunRecord,
        now_ms: u64,
    ) -> Result<TransitionOutcome, StoreError> {
        let (from, to, update) = requeue_move(record, now_ms)?;
        let outcome = self
            .apply_transition(id, Move { from, to, guard: None }, now_ms, "requeued by an operator", &update)
            .await?;
        if outcome == TransitionOutcome::Applied {
            self.forget_dead_webhook(id).await?;
        }
        Ok(outcome)
    }

    /// The old webhook is no longer owed once a run is requeued: the run
    /// will end again.
    pub async fn forget_dead_webhook(&self, id: &RunId) -> Result<(), StoreError> {
        let _: i64 =
            redis::cmd("ZREM").arg(self.keys.webhook_dlq()).arg(id.to_string()).query_async(&mut self.conn()).await?;
        Ok(())
    }

    async fn apply_transition(
        &self,
        id: &RunId,
        mv: Move,
        now_ms: u64,
        cause: &str,
        update: &RunUpdate,
    ) -> Result<TransitionOutcome, StoreError> {
        let write = self.transition_write(id, mv, now_ms, cause, update);
        match write.run(&TRANSITION, &mut self.conn()).await? {
            WriteOutcome::Applied => Ok(TransitionOutcome::Applied),
            WriteOutcome::Stale(Some(current)) => Ok(TransitionOutcome::Stale(current)),
            _ => Err(StoreError::NotFound(id.to_string())),
        }
    }

    /// [`transition`](Self::transition) or, with a `guard`,
    /// [`transition_guarded`](Self::transition_guarded), prepared for a
    /// script that composes it (see [`crate::write`]).
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_transition(
        &self,
        id: &RunId,
        from: RunStatus,
        to: RunStatus,
        guard: Option<(Counter, u32)>,
        now_ms: u64,
        cause: &str,
        update: &RunUpdate,
    ) -> Result<PreparedWrite, StoreError> {
        from.transition(to)?;
        Ok(self.transition_write(id, Move { from, to, guard }, now_ms, cause, update))
    }

    fn transition_write(
        &self,
        id: &RunId,
        Move { from, to, guard }: Move,
        now_ms: u64,
        cause: &str,
        update: &RunUpdate,
    ) -> PreparedWrite {
        let transition = Transition { from: Some(from), to, at_ms: now_ms, cause: cause.to_string() };
        // The record's fate (see transition.lua): expiry once it ends,
        // `reopen` when an ended run is taken back, else nothing to do.
        let fate = if to.is_dead_lettered() {
            (self.config.dead_retention.as_millis() as u64).max(1).to_string()
        } else if to.is_terminal() {
            (self.config.terminal_retention.as_millis() as u64).max(1).to_string()
        } else if from.is_terminal() {
            "reopen".to_string()
        } else {
            "0".to_string()
        };
        let dlq = if to.is_dead_lettered() {
            "add"
        } else if from.is_dead_lettered() {
            "remove"
        } else {
            ""
        };
        let keys = vec![
            self.keys.run(id),
            self.keys.history(id),
            self.keys.audit(),
            self.keys.counts(),
            self.keys.dlq(),
            self.keys.open(),
            self.keys.expiring(),
            self.keys.webhooks_owed(),
        ];
        let mut w = PreparedWrite::new(WriteKind::Transition, id.to_string(), keys);
        w.arg(id)
            .arg(from.as_str())
            .arg(to.as_str())
            .arg(now_ms)
            .arg(serde_json::to_string(&transition).unwrap_or_default())
            .arg(cause)
            .arg(self.config.audit_cap)
            .arg(fate)
            .arg(dlq)
            .arg(guard.map_or("", |(c, _)| c.field()))
            .arg(guard.map_or(0, |(_, n)| n));
        let mut pairs = update.pairs();
        if to.is_terminal() && update.completed_ms.is_none() {
            pairs.push(("completed_ms", now_ms.to_string()));
        }
        for (k, v) in pairs {
            w.arg(k).arg(v);
        }
        w
    }

    /// Runs a prepared write alone (see [`crate::write`]).
    pub async fn apply(&self, write: &PreparedWrite) -> Result<WriteOutcome, StoreError> {
        let script: &Script = match write.kind {
            WriteKind::Transition => &TRANSITION,
            WriteKind::Advance => &ADVANCE,
            WriteKind::Update | WriteKind::Nothing => &UPDATE,
            WriteKind::WebhookStep => &crate::webhooks::STEP,
            WriteKind::Create => &CREATE,
        };
        write.run(script, &mut self.conn()).await
    }

    /// Writes fields without a transition (poll counters, webhook state).
    /// Returns false when the run no longer exists.
    pub async fn update(&self, id: &RunId, update: &RunUpdate) -> Result<bool, StoreError> {
        Ok(self.prepare_update(id, update).run(&UPDATE, &mut self.conn()).await? == WriteOutcome::Applied)
    }

    /// [`update`](Self::update), prepared for a composing script.
    /// Asks for a run to be cancelled, recording `cause`, only while it is
    /// still `status` (a run that moved on since it was read is
    /// [`WriteOutcome::Stale`]: read it again). Prepared for a script that
    /// pushes the job whose step then ends the run (see the producer's
    /// operator): the worker's own ending releases its permit and owes its
    /// webhook as any end does.
    pub fn prepare_cancel_request(&self, id: &RunId, status: RunStatus, cause: &str) -> PreparedWrite {
        let mut w = PreparedWrite::new(WriteKind::Update, id.to_string(), vec![self.keys.run(id)]);
        w.arg("status").arg(status.as_str()).arg("cancel_requested").arg(cause);
        w
    }

    pub fn prepare_update(&self, id: &RunId, update: &RunUpdate) -> PreparedWrite {
        let pairs = update.pairs();
        let kind = if pairs.is_empty() { WriteKind::Nothing } else { WriteKind::Update };
        let mut w = PreparedWrite::new(kind, id.to_string(), vec![self.keys.run(id)]);
        w.arg("").arg("");
        for (k, v) in pairs {
            w.arg(k).arg(v);
        }
        w
    }

    /// Claims the submit of a validated run for `hold` (from now by
    /// Redis's clock), under `token`.
    pub async fn claim_submit(&self, id: &RunId, hold: Duration, token: &str) -> Result<Claim, StoreError> {
        let (code, at): (i64, u64) =
            CLAIM.key(self.keys.run(id)).arg(hold.as_millis() as u64).arg(token).invoke_async(&mut self.conn()).await?;
        Ok(match code {
            1 => Claim::Claimed { token: token.to_string() },
            0 => Claim::Held { left: Duration::from_millis(at) },
            -2 => Claim::SentWithoutAnswer { sent_ms: at },
            _ => Claim::NotValidated,
        })
    }

    /// Marks the submit as sent (just before the Genesys call, at Redis's
    /// time) and extends the claim `token` holds to `hold` from now.
    /// `Ok(false)`: the claim is no longer this copy's; it must not call.
    pub async fn mark_submit_sent(&self, id: &RunId, token: &str, hold: Duration) -> Result<bool, StoreError> {
        let n: i64 =
            MARK.key(self.keys.run(id)).arg(token).arg(hold.as_millis() as u64).invoke_async(&mut self.conn()).await?;
        Ok(n == 1)
    }

    /// Gives back the claim `token` holds, before any call was made (a
    /// denied permit), so another copy may submit at once: only if it is
    /// still this copy's (a stalled copy must not clear a newer one's).
    pub fn prepare_release_claim(&self, id: &RunId, token: &str) -> PreparedWrite {
        let mut w = PreparedWrite::new(WriteKind::Update, id.to_string(), vec![self.keys.run(id)]);
        w.arg("submit_claim_by").arg(token);
        for (k, v) in RunUpdate::default().release_claim().pairs() {
            w.arg(k).arg(v);
        }
        w
    }

    /// Moves `counter` from `expected` to `expected + 1`, writing `update`
    /// with it, if no duplicate job did so first and the run is still
    /// `status` (a step decided on a run that has since ended, say by the
    /// sweeper, must not write into it). `Ok(false)`: either moved on.
    pub async fn advance(
        &self,
        id: &RunId,
        counter: Counter,
        expected: u32,
        status: RunStatus,
        update: &RunUpdate,
    ) -> Result<bool, StoreError> {
        let write = self.prepare_advance(id, counter, expected, status, update);
        Ok(write.run(&ADVANCE, &mut self.conn()).await? == WriteOutcome::Applied)
    }

    /// [`advance`](Self::advance), prepared for a composing script.
    pub fn prepare_advance(
        &self,
        id: &RunId,
        counter: Counter,
        expected: u32,
        status: RunStatus,
        update: &RunUpdate,
    ) -> PreparedWrite {
        let mut w = PreparedWrite::new(WriteKind::Advance, id.to_string(), vec![self.keys.run(id)]);
        w.arg(counter.field()).arg(expected).arg(status.as_str());
        for (k, v) in update.pairs() {
            if k != counter.field() {
                w.arg(k).arg(v);
            }
        }
        w
    }

    /// [`prepare_advance`](Self::prepare_advance) that also records the
    /// failed attempt it carries (its `last_error`, with the correlation
    /// id) in the run's history, timed by Redis: `dlq show` then lists
    /// every attempt's error, not only the last. Not for a secure run that
    /// withholds its data (an error may quote it).
    pub fn prepare_advance_logged(
        &self,
        id: &RunId,
        counter: Counter,
        expected: u32,
        status: RunStatus,
        update: &RunUpdate,
    ) -> PreparedWrite {
        let mut w = self.prepare_advance(id, counter, expected, status, update);
        if let Some(error) = &update.last_error {
            let stage = if matches!(status, RunStatus::Accepted | RunStatus::Validated) { "submit" } else { "poll" };
            let entry = serde_json::json!({
                "kind": "attempt", "stage": stage, "error": error, "correlationId": update.correlation_id,
            });
            w.keys.push(self.keys.history(id));
            w.arg(entry);
        }
        w
    }

    /// Extends the claim `token` holds over a call in flight to `hold`
    /// from now. `Ok(false)`: it is not this copy's any more.
    pub async fn renew_submit_claim(&self, id: &RunId, token: &str, hold: Duration) -> Result<bool, StoreError> {
        let n: i64 = RENEW_CLAIM
            .key(self.keys.run(id))
            .arg(token)
            .arg(hold.as_millis() as u64)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(n == 1)
    }

    /// The members of index `key` scored up to `max`, lowest first, at most
    /// `limit` (at least one): a bounded slice for each sweep.
    pub(crate) async fn oldest_up_to(&self, key: &str, max: u64, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(redis::cmd("ZRANGEBYSCORE")
            .arg(key)
            .arg("-inf")
            .arg(max)
            .arg("LIMIT")
            .arg(0)
            .arg(limit.max(1))
            .query_async(&mut self.conn())
            .await?)
    }

    /// Runs that have not ended although their deadline passed more than
    /// `grace_ms` ago, oldest first: the ones whose job chain was lost (for
    /// instance with Redis data that had no AOF). A sweeper drives them to
    /// an end. Ids whose record is gone are dropped from the open set here
    /// (nothing is left to end), so they cannot fill every slice and starve
    /// the runs behind them.
    pub async fn overdue(&self, now_ms: u64, grace_ms: u64, limit: usize) -> Result<Vec<RunId>, StoreError> {
        let mut conn = self.conn();
        let raw = self.oldest_up_to(&self.keys.open(), now_ms.saturating_sub(grace_ms), limit).await?;
        if raw.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &raw {
            match id.parse::<RunId>() {
                Ok(run) => pipe.cmd("EXISTS").arg(self.keys.run(&run)),
                // Not a run id at all: nothing to end.
                Err(_) => pipe.cmd("ECHO").arg(0),
            };
        }
        let exists: Vec<i64> = pipe.query_async(&mut conn).await?;
        let (mut open, mut gone) = (Vec::new(), Vec::new());
        for (id, found) in raw.iter().zip(exists) {
            match (found, id.parse::<RunId>()) {
                (1, Ok(run)) => open.push(run),
                _ => gone.push(id.as_str()),
            }
        }
        if !gone.is_empty() {
            let _: i64 = redis::cmd("ZREM").arg(self.keys.open()).arg(&gone).query_async(&mut conn).await?;
            tracing::warn!(count = gone.len(), "dropped open-set entries whose run record is gone");
        }
        Ok(open)
    }

    /// Takes ended runs whose record expired out of the counts and the
    /// indexes (dead-letter sets, open set), in a bounded slice: `grace_ms`
    /// after their expiry, any whose record is really gone. Returns how
    /// many were reconciled. Without this, counts only grew and the
    /// dead-letter indexes outlived their records.
    pub async fn reconcile_expired(&self, now_ms: u64, grace_ms: u64, limit: usize) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let due = self.oldest_up_to(&self.keys.expiring(), now_ms.saturating_sub(grace_ms), limit).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let mut n = 0;
        for member in &due {
            let (status, id) = member.split_once('|').unwrap_or(("", member.as_str()));
            let Ok(run) = id.parse::<RunId>() else {
                // Not gcrun's: drop it from the index.
                let _: i64 = redis::cmd("ZREM").arg(self.keys.expiring()).arg(member).query_async(&mut conn).await?;
                continue;
            };
            let known = if RunStatus::ALL.iter().any(|s| s.as_str() == status) { status } else { "" };
            let done: i64 = RECONCILE
                .key(self.keys.run(&run))
                .key(self.keys.expiring())
                .key(self.keys.counts())
                .key(self.keys.dlq())
                .key(self.keys.webhook_dlq())
                .key(self.keys.open())
                .key(self.keys.runs())
                .key(self.keys.trimmed())
                .arg(member)
                .arg(known)
                .arg(id)
                .invoke_async(&mut conn)
                .await?;
            n += done as usize;
        }
        Ok(n)
    }

    /// Dead-letters a run whose record can no longer be read (a request
    /// that does not parse, a field that is not what gcrun wrote), with the
    /// reason, so it leaves the open set and shows in the dead-letter set
    /// ([`dlq_unreadable`](Self::dlq_unreadable)). Only the status has to
    /// be readable. An ended run whose webhook is still owed gets a dead
    /// webhook instead, with the reason. `Ok(false)`: nothing to do, or not
    /// even the status can be read.
    pub async fn quarantine(&self, id: &RunId, reason: &str, now_ms: u64) -> Result<bool, StoreError> {
        let (raw, webhook): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(self.keys.run(id))
            .arg("status")
            .arg("webhook_status")
            .query_async(&mut self.conn())
            .await?;
        let Some(status) = raw.and_then(|s| s.parse::<RunStatus>().ok()) else { return Ok(false) };
        let cause = format!("record unreadable: {reason}");
        if status.is_terminal() {
            if webhook.as_deref() != Some("pending") {
                return Ok(false);
            }
            let attempts: Option<u32> =
                redis::cmd("HGET").arg(self.keys.run(id)).arg("webhook_attempts").query_async(&mut self.conn()).await?;
            let dead = crate::WebhookAttempt::Dead { reason: cause };
            return self.webhook_attempt(id, attempts.unwrap_or(0), &dead, now_ms).await;
        }
        let update = RunUpdate::failure(cause.clone());
        Ok(self.transition(id, status, RunStatus::Dead, now_ms, &cause, &update).await? == TransitionOutcome::Applied)
    }
}
