//! Creating runs, reading them, and moving them through their lifecycle.

use std::collections::HashMap;
use std::sync::LazyLock;

use gcrun_model::{RunId, RunRequest, RunStatus, Transition};
use redis::Script;

use crate::record::{RunRecord, RunUpdate};
use crate::{Store, StoreError, keys};

/// Creates a run unless its idempotency key already names one.
/// KEYS: run, history, audit, counts, idempotency, open
/// ARGV: id, now_ms, audit_cap, idem_ttl_ms (0: no key), transition_json,
///       cause, field pairs...
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if ARGV[4] ~= '0' then
  local existing = redis.call('GET', KEYS[5])
  if existing then return {0, existing} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, ARGV[1]} end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('RPUSH', KEYS[2], ARGV[5])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'run', ARGV[1], 'from', '', 'to', 'accepted', 'at', ARGV[2], 'cause', ARGV[6])
redis.call('HINCRBY', KEYS[4], 'accepted', 1)
redis.call('HINCRBY', KEYS[4], 'total', 1)
redis.call('ZADD', KEYS[6], redis.call('HGET', KEYS[1], 'deadline_ms'), ARGV[1])
if ARGV[4] ~= '0' then redis.call('SET', KEYS[5], ARGV[1], 'PX', ARGV[4]) end
return {1, ARGV[1]}
",
    )
});

/// Moves a run from `from` to `to` if it is still in `from`.
/// KEYS: run, history, audit, counts, dlq, open (runs not yet ended, by deadline)
/// ARGV: id, from, to, now_ms, transition_json, cause, audit_cap,
///       expire_ms (0: keep), dlq ('add', 'remove' or ''), field pairs...
static TRANSITION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {-1, ''} end
if cur ~= ARGV[2] then return {0, cur} end
local fields = {'status', ARGV[3], 'updated_ms', ARGV[4]}
for i = 10, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('RPUSH', KEYS[2], ARGV[5])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*', 'run', ARGV[1], 'from', ARGV[2], 'to', ARGV[3], 'at', ARGV[4], 'cause', ARGV[6])
redis.call('HINCRBY', KEYS[4], ARGV[2], -1)
redis.call('HINCRBY', KEYS[4], ARGV[3], 1)
if ARGV[9] == 'add' then redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1]) end
if ARGV[9] == 'remove' then redis.call('ZREM', KEYS[5], ARGV[1]) end
if ARGV[8] ~= '0' then
  redis.call('ZREM', KEYS[6], ARGV[1])
else
  redis.call('ZADD', KEYS[6], redis.call('HGET', KEYS[1], 'deadline_ms') or '0', ARGV[1])
end
if ARGV[8] ~= '0' then
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
  redis.call('PEXPIRE', KEYS[2], ARGV[8])
else
  redis.call('PERSIST', KEYS[1])
  redis.call('PERSIST', KEYS[2])
end
return {1, cur}
",
    )
});

/// Sets fields of an existing run (never recreates an expired one).
static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
",
    )
});

/// Advances a counter field from `expected` to `expected + 1` (with more
/// fields) only if it still holds `expected`: at most one of several
/// duplicate jobs for the same step goes on.
/// KEYS: run; ARGV: field, expected, field pairs...
static ADVANCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local cur = redis.call('HGET', KEYS[1], ARGV[1]) or '0'
if cur ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], tostring(tonumber(ARGV[2]) + 1))
if #ARGV > 2 then
  local fields = {}
  for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
end
return 1
",
    )
});

/// Claims the right to submit a validated run until `until`, unless another
/// worker holds an unexpired claim: two copies of one submit job must
/// never both call Genesys.
/// KEYS: run; ARGV: now_ms, until_ms → {1, until} claimed, {0, held_until}
/// held by another, {-1, 0} not validated (or gone).
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'status') ~= 'validated' then return {-1, 0} end
local held = tonumber(redis.call('HGET', KEYS[1], 'submit_claim_until') or '0')
if held > tonumber(ARGV[1]) then return {0, held} end
redis.call('HSET', KEYS[1], 'submit_claim_until', ARGV[2])
return {1, tonumber(ARGV[2])}
",
    )
});

/// What [`Store::claim_submit`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This caller may submit until the given time.
    Claimed,
    /// Another copy holds the claim until this time (ms).
    HeldUntil(u64),
    /// The run is no longer `validated`.
    NotValidated,
}

/// Which step counter [`Store::advance`] moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Poll,
    Webhook,
}

impl Counter {
    fn field(self) -> &'static str {
        match self {
            Counter::Poll => "poll_attempts",
            Counter::Webhook => "webhook_attempts",
        }
    }
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
        let idem_key = request.idempotency_key();
        let transition = Transition { from: None, to: RunStatus::Accepted, at_ms: now_ms, cause: "accepted".into() };
        let mut inv = CREATE.key(keys::run(&id));
        inv.key(keys::history(&id))
            .key(keys::audit())
            .key(keys::counts())
            .key(keys::idempotency(idem_key.unwrap_or("-")))
            .key(keys::open())
            .arg(id.to_string())
            .arg(now_ms)
            .arg(self.config.audit_cap)
            .arg(if idem_key.is_some() { self.config.idempotency_ttl.as_millis() as u64 } else { 0 })
            .arg(serde_json::to_string(&transition).unwrap_or_default())
            .arg("accepted");
        let fields: [(&str, String); 9] = [
            ("id", id.to_string()),
            ("status", RunStatus::Accepted.as_str().into()),
            ("flavor", request.flavor().as_str().into()),
            ("target", request.target().id().into()),
            ("request", request.to_value().to_string()),
            ("created_ms", now_ms.to_string()),
            ("updated_ms", now_ms.to_string()),
            ("deadline_ms", deadline_ms.to_string()),
            ("poll_attempts", "0".into()),
        ];
        for (k, v) in fields {
            inv.arg(k).arg(v);
        }
        let (created, run): (i64, String) = inv.invoke_async(&mut self.conn()).await?;
        let run: RunId =
            run.parse().map_err(|e| StoreError::Corrupt { run, detail: format!("idempotency value: {e}") })?;
        Ok(if created == 1 { Created::New(run) } else { Created::Existing(run) })
    }

    /// The run's record, or `None` when it does not exist (or expired).
    pub async fn get_run(&self, id: &RunId) -> Result<Option<RunRecord>, StoreError> {
        let h: HashMap<String, String> = redis::cmd("HGETALL").arg(keys::run(id)).query_async(&mut self.conn()).await?;
        if h.is_empty() {
            return Ok(None);
        }
        RunRecord::from_hash(&id.to_string(), &h).map(Some)
    }

    /// The record with its transitions.
    pub async fn get_run_with_history(&self, id: &RunId) -> Result<Option<RunRecord>, StoreError> {
        let Some(mut record) = self.get_run(id).await? else { return Ok(None) };
        record.transitions = self.history(id).await?;
        Ok(Some(record))
    }

    /// The run's transitions, oldest first.
    pub async fn history(&self, id: &RunId) -> Result<Vec<Transition>, StoreError> {
        let raw: Vec<String> =
            redis::cmd("LRANGE").arg(keys::history(id)).arg(0).arg(-1).query_async(&mut self.conn()).await?;
        raw.iter()
            .map(|t| {
                serde_json::from_str(t)
                    .map_err(|e| StoreError::Corrupt { run: id.to_string(), detail: format!("history: {e}") })
            })
            .collect()
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
        self.apply_transition(id, from, to, now_ms, cause, update).await
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
        let from = record.status;
        let to = from.requeue()?;
        let length = record.deadline_ms.saturating_sub(record.created_ms);
        let update = RunUpdate {
            poll_attempts: Some(0),
            retries: Some(0),
            webhook_attempts: Some(0),
            submit_claim_until: Some(0),
            deadline_ms: Some(now_ms.saturating_add(length)),
            enqueued: Some(false),
            ..RunUpdate::default()
        };
        self.apply_transition(id, from, to, now_ms, "requeued by an operator", &update).await
    }

    async fn apply_transition(
        &self,
        id: &RunId,
        from: RunStatus,
        to: RunStatus,
        now_ms: u64,
        cause: &str,
        update: &RunUpdate,
    ) -> Result<TransitionOutcome, StoreError> {
        let transition = Transition { from: Some(from), to, at_ms: now_ms, cause: cause.to_string() };
        let expire_ms = if to.is_dead_lettered() {
            self.config.dead_retention.as_millis() as u64
        } else if to.is_terminal() {
            self.config.terminal_retention.as_millis() as u64
        } else {
            0
        };
        let dlq = if to.is_dead_lettered() {
            "add"
        } else if from.is_dead_lettered() {
            "remove"
        } else {
            ""
        };
        let mut inv = TRANSITION.key(keys::run(id));
        inv.key(keys::history(id))
            .key(keys::audit())
            .key(keys::counts())
            .key(keys::dlq())
            .key(keys::open())
            .arg(id.to_string())
            .arg(from.as_str())
            .arg(to.as_str())
            .arg(now_ms)
            .arg(serde_json::to_string(&transition).unwrap_or_default())
            .arg(cause)
            .arg(self.config.audit_cap)
            .arg(expire_ms)
            .arg(dlq);
        let mut pairs = update.pairs();
        if to.is_terminal() && update.completed_ms.is_none() {
            pairs.push(("completed_ms", now_ms.to_string()));
        }
        for (k, v) in pairs {
            inv.arg(k).arg(v);
        }
        let (applied, current): (i64, String) = inv.invoke_async(&mut self.conn()).await?;
        match applied {
            1 => Ok(TransitionOutcome::Applied),
            0 => Ok(TransitionOutcome::Stale(
                current.parse().map_err(|e: String| StoreError::Corrupt { run: id.to_string(), detail: e })?,
            )),
            _ => Err(StoreError::NotFound(id.to_string())),
        }
    }

    /// Writes fields without a transition (poll counters, webhook state).
    /// Returns false when the run no longer exists.
    pub async fn update(&self, id: &RunId, update: &RunUpdate) -> Result<bool, StoreError> {
        let pairs = update.pairs();
        if pairs.is_empty() {
            return Ok(true);
        }
        let mut inv = UPDATE.key(keys::run(id));
        for (k, v) in pairs {
            inv.arg(k).arg(v);
        }
        let n: i64 = inv.invoke_async(&mut self.conn()).await?;
        Ok(n == 1)
    }

    /// Claims the submit of a validated run for `hold_ms`.
    pub async fn claim_submit(&self, id: &RunId, now_ms: u64, hold_ms: u64) -> Result<Claim, StoreError> {
        let (code, until): (i64, u64) =
            CLAIM.key(keys::run(id)).arg(now_ms).arg(now_ms + hold_ms).invoke_async(&mut self.conn()).await?;
        Ok(match code {
            1 => Claim::Claimed,
            0 => Claim::HeldUntil(until),
            _ => Claim::NotValidated,
        })
    }

    /// Moves `counter` from `expected` to `expected + 1`, writing `update`
    /// with it, if no duplicate job did so first. `Ok(false)`: it did.
    pub async fn advance(
        &self,
        id: &RunId,
        counter: Counter,
        expected: u32,
        update: &RunUpdate,
    ) -> Result<bool, StoreError> {
        let mut inv = ADVANCE.key(keys::run(id));
        inv.arg(counter.field()).arg(expected);
        for (k, v) in update.pairs() {
            if k != counter.field() {
                inv.arg(k).arg(v);
            }
        }
        let n: i64 = inv.invoke_async(&mut self.conn()).await?;
        match n {
            1 => Ok(true),
            0 => Ok(false),
            _ => Err(StoreError::NotFound(id.to_string())),
        }
    }

    /// Marks a run's webhook `dead` with its reason and indexes it for
    /// operators (`{gcrun}:webhook-dlq`).
    pub async fn webhook_dead(&self, id: &RunId, reason: &str, now_ms: u64) -> Result<(), StoreError> {
        let update = RunUpdate {
            webhook_status: Some(gcrun_model::WebhookStatus::Dead),
            webhook_last_error: Some(reason.to_string()),
            ..RunUpdate::default()
        };
        self.update(id, &update).await?;
        let _: i64 = redis::cmd("ZADD")
            .arg(keys::webhook_dlq())
            .arg(now_ms)
            .arg(id.to_string())
            .query_async(&mut self.conn())
            .await?;
        Ok(())
    }

    /// Runs whose webhook is dead, oldest first.
    pub async fn webhook_dlq(&self) -> Result<Vec<RunId>, StoreError> {
        let ids: Vec<String> =
            redis::cmd("ZRANGE").arg(keys::webhook_dlq()).arg(0).arg(-1).query_async(&mut self.conn()).await?;
        Ok(ids.iter().filter_map(|i| i.parse().ok()).collect())
    }

    /// Puts a dead webhook back to `pending` with no attempts; the caller
    /// pushes its webhook job.
    pub async fn webhook_requeue(&self, id: &RunId) -> Result<(), StoreError> {
        let update = RunUpdate {
            webhook_status: Some(gcrun_model::WebhookStatus::Pending),
            webhook_attempts: Some(0),
            ..RunUpdate::default()
        };
        if !self.update(id, &update).await? {
            return Err(StoreError::NotFound(id.to_string()));
        }
        let _: i64 =
            redis::cmd("ZREM").arg(keys::webhook_dlq()).arg(id.to_string()).query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Runs that have not ended although their deadline passed more than
    /// `grace_ms` ago, oldest first: the ones whose job chain was lost (for
    /// instance with Redis data that had no AOF). A sweeper drives them to
    /// an end.
    pub async fn overdue(&self, now_ms: u64, grace_ms: u64, limit: usize) -> Result<Vec<RunId>, StoreError> {
        let ids: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(keys::open())
            .arg("-inf")
            .arg(now_ms.saturating_sub(grace_ms))
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn())
            .await?;
        Ok(ids.iter().filter_map(|i| i.parse().ok()).collect())
    }

    /// Runs per status, plus `total` (every run ever accepted).
    pub async fn counts(&self) -> Result<HashMap<String, i64>, StoreError> {
        Ok(redis::cmd("HGETALL").arg(keys::counts()).query_async(&mut self.conn()).await?)
    }

    /// Entries in the audit stream.
    pub async fn audit_len(&self) -> Result<u64, StoreError> {
        Ok(redis::cmd("XLEN").arg(keys::audit()).query_async(&mut self.conn()).await?)
    }

    /// The audit entries of one run (scans the stream: for tests and
    /// operators, not hot paths).
    pub async fn audit_for(&self, id: &RunId) -> Result<Vec<HashMap<String, String>>, StoreError> {
        let reply: redis::streams::StreamRangeReply =
            redis::cmd("XRANGE").arg(keys::audit()).arg("-").arg("+").query_async(&mut self.conn()).await?;
        let id = id.to_string();
        Ok(reply
            .ids
            .into_iter()
            .map(|e| {
                e.map
                    .into_iter()
                    .filter_map(|(k, v)| redis::from_redis_value::<String>(v).ok().map(|v| (k, v)))
                    .collect::<HashMap<_, _>>()
            })
            .filter(|m| m.get("run") == Some(&id))
            .collect())
    }

    /// Caches an action definition (JSON) for workers; `ttl` bounds staleness.
    pub async fn cache_definition(&self, id: &str, json: &str, ttl_ms: u64, now_ms: u64) -> Result<(), StoreError> {
        let value = serde_json::json!({"at": now_ms, "ttl": ttl_ms, "def": json}).to_string();
        let _: () =
            redis::cmd("HSET").arg(keys::definitions()).arg(id).arg(value).query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// A cached definition that is still fresh at `now_ms`.
    pub async fn cached_definition(&self, id: &str, now_ms: u64) -> Result<Option<String>, StoreError> {
        let raw: Option<String> =
            redis::cmd("HGET").arg(keys::definitions()).arg(id).query_async(&mut self.conn()).await?;
        let Some(raw) = raw else { return Ok(None) };
        let v: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
        let fresh = v["at"].as_u64().zip(v["ttl"].as_u64()).is_some_and(|(at, ttl)| now_ms < at.saturating_add(ttl));
        Ok(if fresh { v["def"].as_str().map(str::to_owned) } else { None })
    }
}
