//! A record write and the submit job it calls for, in one Redis script
//! (`lua/then_push.lua`), composed from the store's write fragments and the
//! engine's push, as the worker's step script is (see ARCHITECTURE.md):
//! creating a run and pushing its job, or requeueing a dead-lettered run
//! and pushing its job, can no longer be half done.

use std::sync::LazyLock;

use gcrun_queue::engine::lua as queue_lua;
use gcrun_queue::{Job, Queues};
use gcrun_store::Conn;
use gcrun_store::{PreparedWrite, StoreError, WriteOutcome, write::lua as store_lua};
use redis::Script;

static THEN_PUSH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&[store_lua::all().as_str(), queue_lua::LIB, include_str!("../lua/then_push.lua")].concat())
});

/// The script's keys and arguments for `write` then `job`.
fn call(queues: &Queues, write: &PreparedWrite, job: &Job) -> (Vec<String>, Vec<String>) {
    let push = queues.engine().push_call(job);
    let keys: Vec<String> = write.keys.iter().chain(&push.keys).cloned().collect();
    let mut args = vec![write.kind.function().to_string(), write.keys.len().to_string(), write.args.len().to_string()];
    args.extend(write.args.iter().chain(&push.args).cloned());
    (keys, args)
}

/// Performs `write` and, if it applied, pushes `job`, in one script.
pub async fn write_then_push(
    conn: &mut Conn,
    queues: &Queues,
    write: &PreparedWrite,
    job: &Job,
) -> Result<WriteOutcome, StoreError> {
    let (keys, args) = call(queues, write, job);
    let mut inv = THEN_PUSH.prepare_invoke();
    for key in &keys {
        inv.key(key);
    }
    for arg in &args {
        inv.arg(arg);
    }
    let reply: redis::Value = inv.invoke_async(conn).await?;
    let outcome = write.decode(reply)?;
    if outcome == WriteOutcome::Applied {
        queues.engine().announce(std::slice::from_ref(job));
    }
    Ok(outcome)
}

/// [`write_then_push`] for many, pipelined: one round trip for the lot,
/// each pair still one script (atomic on its own).
pub async fn write_then_push_all(
    conn: &mut Conn,
    queues: &Queues,
    pairs: &[(PreparedWrite, Job)],
) -> Result<Vec<WriteOutcome>, StoreError> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    // A pipeline cannot load a script on a miss: load it first.
    THEN_PUSH.prepare_invoke().load_async(conn).await?;
    let mut pipe = redis::pipe();
    for (write, job) in pairs {
        let (keys, args) = call(queues, write, job);
        pipe.cmd("EVALSHA").arg(THEN_PUSH.get_hash()).arg(keys.len()).arg(&keys).arg(&args);
    }
    let replies: Vec<redis::Value> = pipe.query_async(conn).await?;
    let mut outcomes = Vec::with_capacity(pairs.len());
    for ((write, _), reply) in pairs.iter().zip(replies) {
        outcomes.push(write.decode(reply)?);
    }
    queues.engine().announce(&pairs.iter().map(|(_, j)| *j).collect::<Vec<_>>());
    Ok(outcomes)
}
