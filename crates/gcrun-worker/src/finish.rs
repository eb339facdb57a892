//! The step script: a step's last act (the record's compare-and-set
//! write, the follow-up jobs, the job's ack) in one Redis script.
//!
//! Composed here, where both halves are known, from the store's write
//! fragments ([`gcrun_store::write::lua`]) and the engine's
//! ([`gcrun_queue::engine::lua`]): each crate keeps owning its keys and its
//! Lua, and each fragment also runs alone in its own crate's tests. The
//! glue (`lua/finish.lua`) only splits KEYS and ARGV between them and
//! drops the successors of a write that did not apply.

use std::sync::LazyLock;

use gcrun_queue::engine::{Engine, lua as queue_lua};
use gcrun_queue::{Job, JobHandle};
use gcrun_store::Conn;
use gcrun_store::{PreparedWrite, StoreError, WriteOutcome, write::lua as store_lua};
use redis::Script;

static FINISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        &[store_lua::all().as_str(), queue_lua::LIB, queue_lua::ACK, include_str!("../lua/finish.lua")].concat(),
    )
});

/// q_ack's arguments before the successors: id, token, three wake channels.
const ACK_FIXED_ARGS: usize = 5;

/// Performs `write`, then (if it applied) pushes `successors`, and acks
/// the job `handle` holds, in one script; marks the handle settled. The
/// ack finds the lease gone when this copy's lease lapsed: the write and
/// the successors still count, the job is left to the copy that holds it.
pub async fn finish(
    conn: &mut Conn,
    engine: &Engine,
    handle: &JobHandle,
    write: &PreparedWrite,
    successors: &[Job],
) -> Result<WriteOutcome, StoreError> {
    let ack = engine.ack_call(handle.lease(), successors);
    debug_assert_eq!(ack.args.len() - successors.len() * 4, ACK_FIXED_ARGS);
    let mut inv = FINISH.prepare_invoke();
    for key in write.keys.iter().chain(&ack.keys) {
        inv.key(key);
    }
    inv.arg(write.kind.function()).arg(write.keys.len()).arg(write.args.len()).arg(ACK_FIXED_ARGS);
    for arg in write.args.iter().chain(&ack.args) {
        inv.arg(arg);
    }
    let (written, acked): (redis::Value, i64) = inv.invoke_async(conn).await?;
    handle.mark_settled();
    if acked == 0 {
        tracing::warn!(id = %handle.lease().id, "lease lost before the step finished; another worker has the job");
    }
    let outcome = write.decode(written)?;
    if outcome == WriteOutcome::Applied {
        engine.announce(successors);
    }
    Ok(outcome)
}
