//! A run record's compare-and-set writes as prepared script calls: the
//! store decides the keys and arguments (and refuses an illegal move
//! before Redis), and either runs the write alone or hands it to a script
//! that composes it with other work. The worker's step script runs the
//! write, the step's successors and the job's ack in one call; the store
//! keeps owning its keys and its Lua, the engine its own.

use gcrun_model::RunStatus;

use crate::StoreError;

/// The store's write fragments, for a script composed elsewhere. Each
/// defines one `local function s_<name>(KEYS, ARGV)`; every name starts
/// with `s_`.
pub mod lua {
    pub const TRANSITION: &str = include_str!("../lua/transition.lua");
    pub const ADVANCE: &str = include_str!("../lua/advance.lua");
    pub const UPDATE: &str = include_str!("../lua/update.lua");
    pub const WEBHOOK_STEP: &str = include_str!("../lua/webhook_step.lua");
    pub const CREATE_RUN: &str = include_str!("../lua/create_run.lua");
    /// Every fragment, in one string.
    pub fn all() -> String {
        [TRANSITION, ADVANCE, UPDATE, WEBHOOK_STEP, CREATE_RUN].concat()
    }
}

/// Which write fragment a [`PreparedWrite`] calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Transition,
    Advance,
    Update,
    WebhookStep,
    /// A new run (applied) unless its idempotency key names one.
    Create,
    /// Nothing to write (an empty update): always applies.
    Nothing,
}

impl WriteKind {
    /// The Lua function that performs it (`none` for [`WriteKind::Nothing`],
    /// which a composing script provides).
    pub fn function(self) -> &'static str {
        match self {
            WriteKind::Transition => "s_transition",
            WriteKind::Advance => "s_advance",
            WriteKind::Update => "s_update",
            WriteKind::WebhookStep => "s_webhook_step",
            WriteKind::Create => "s_create_run",
            WriteKind::Nothing => "none",
        }
    }
}

/// What a write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Applied,
    /// Another copy went on first, or the record moved on (its status when
    /// the write says).
    Stale(Option<RunStatus>),
    /// The record is gone (only for writes that update in place).
    Gone,
    /// A create found its idempotency key (or id) taken by this run.
    Existing(gcrun_model::RunId),
}

/// One write, ready to run: its fragment, keys and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedWrite {
    pub kind: WriteKind,
    pub run: String,
    pub keys: Vec<String>,
    pub args: Vec<String>,
}

impl PreparedWrite {
    /// A write of nothing, for `run` (always applies).
    pub fn nothing(run: &gcrun_model::RunId) -> Self {
        Self::new(WriteKind::Nothing, run.to_string(), Vec::new())
    }

    pub(crate) fn new(kind: WriteKind, run: String, keys: Vec<String>) -> Self {
        Self { kind, run, keys, args: Vec::new() }
    }

    pub(crate) fn arg(&mut self, v: impl ToString) -> &mut Self {
        self.args.push(v.to_string());
        self
    }

    /// Reads the fragment's reply. A write that needs a record finds none:
    /// [`StoreError::NotFound`].
    pub fn decode(&self, reply: redis::Value) -> Result<WriteOutcome, StoreError> {
        let not_found = || StoreError::NotFound(self.run.clone());
        match self.kind {
            WriteKind::Nothing => Ok(WriteOutcome::Applied),
            WriteKind::Transition => {
                let (applied, current): (i64, String) = parse(reply)?;
                match applied {
                    1 => Ok(WriteOutcome::Applied),
                    0 => Ok(WriteOutcome::Stale(Some(
                        current
                            .parse()
                            .map_err(|e: String| StoreError::Corrupt { run: self.run.clone(), detail: e })?,
                    ))),
                    _ => Err(not_found()),
                }
            }
            WriteKind::Create => {
                let (created, run): (i64, String) = parse(reply)?;
                if created == 1 {
                    return Ok(WriteOutcome::Applied);
                }
                let id = run
                    .parse()
                    .map_err(|e| StoreError::Corrupt { run: run.clone(), detail: format!("idempotency value: {e}") })?;
                Ok(WriteOutcome::Existing(id))
            }
            WriteKind::Update => match parse::<i64>(reply)? {
                1 => Ok(WriteOutcome::Applied),
                2 => Ok(WriteOutcome::Stale(None)),
                _ => Ok(WriteOutcome::Gone),
            },
            WriteKind::Advance | WriteKind::WebhookStep => match parse::<i64>(reply)? {
                1 => Ok(WriteOutcome::Applied),
                0 => Ok(WriteOutcome::Stale(None)),
                _ => Err(not_found()),
            },
        }
    }

    /// Runs it alone.
    pub(crate) async fn run(&self, script: &redis::Script, conn: &mut crate::Conn) -> Result<WriteOutcome, StoreError> {
        if self.kind == WriteKind::Nothing {
            return Ok(WriteOutcome::Applied);
        }
        let mut inv = script.prepare_invoke();
        for k in &self.keys {
            inv.key(k);
        }
        for a in &self.args {
            inv.arg(a);
        }
        let reply: redis::Value = inv.invoke_async(conn).await?;
        self.decode(reply)
    }
}

fn parse<T: redis::FromRedisValue>(v: redis::Value) -> Result<T, StoreError> {
    Ok(redis::from_redis_value(v).map_err(redis::RedisError::from)?)
}
