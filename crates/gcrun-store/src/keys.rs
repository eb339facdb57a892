//! Every Redis key gcrun itself writes. Nothing outside this module spells a
//! key. All share the `{gcrun}` hash tag: a transition touches the run, its
//! history, the audit stream, the counts and the dead-letter index in one
//! script, which Redis Cluster allows only within one slot.

use gcrun_model::RunId;

pub const TAG: &str = "{gcrun}";

/// Hash: one run's record.
pub fn run(id: &RunId) -> String {
    format!("{TAG}:run:{id}")
}

/// List: one run's transitions, as JSON, oldest first.
pub fn history(id: &RunId) -> String {
    format!("{TAG}:run:{id}:history")
}

/// Stream: every transition of every run (capped).
pub fn audit() -> String {
    format!("{TAG}:audit")
}

/// Hash: status → number of runs in it.
pub fn counts() -> String {
    format!("{TAG}:counts")
}

/// Sorted set: dead-lettered run ids, scored by when they got there (ms).
pub fn dlq() -> String {
    format!("{TAG}:dlq")
}

/// Sorted set: every run the store holds, scored by when it was accepted
/// (ms): the index `runs list` and the dashboard page through.
pub fn runs() -> String {
    format!("{TAG}:runs")
}

/// Sorted set: runs that have not ended, scored by their deadline (ms).
pub fn open() -> String {
    format!("{TAG}:open")
}

/// Sorted set: runs whose webhook is dead, scored by when (ms).
/// Ended runs by when their record expires (`<status>|<id>`), so the
/// sweeper can take expired ones out of the counts and indexes.
pub fn expiring() -> String {
    "{gcrun}:expiring".into()
}

pub fn webhook_dlq() -> String {
    format!("{TAG}:webhook-dlq")
}

/// String: idempotency key → run id.
pub fn idempotency_of(client: Option<&str>, key: &str) -> String {
    match client {
        // Client names have no ':', and no library key starts with the
        // client prefix, so the two spaces cannot meet.
        Some(client) => format!("{TAG}:idem-client:{client}:{key}"),
        None => idempotency(key),
    }
}

/// String: an idempotency key (of the library and the CLI) → its run id.
pub fn idempotency(key: &str) -> String {
    format!("{TAG}:idem:{key}")
}

/// The limiter's keys for one Genesys client.
pub fn limiter(name: &str) -> [String; 3] {
    [format!("{TAG}:limiter:{name}:tat"), format!("{TAG}:limiter:{name}:leases"), format!("{TAG}:limiter:{name}:pause")]
}

/// Zset: runs of one client waiting for a concurrency slot, by when they
/// began to wait (a release wakes the first).
pub fn limiter_waiting(name: &str) -> String {
    format!("{TAG}:limiter:{name}:waiting")
}

/// Zset: ended runs whose webhook is still owed (pending), by when it was
/// last seen owed; the sweeper checks that each still has its delivery job.
pub fn webhooks_owed() -> String {
    format!("{TAG}:webhooks-owed")
}

/// Zset: runs of one client told to wait for the rate, by the moment the
/// token reserved for each is due.
pub fn limiter_reserved(name: &str) -> String {
    format!("{TAG}:limiter:{name}:reserved")
}

/// Hash: limiter name → the limits its workers were given (JSON).
pub fn limiters() -> String {
    format!("{TAG}:limiters")
}

/// Hash: status → ended runs whose record expired (the sweeper took them
/// out of the counts), for operators to see what retention dropped.
pub fn trimmed() -> String {
    format!("{TAG}:trimmed")
}

/// Hash: operators' holds, scope (`flavor:runs`, `target:<id>`) → note.
pub fn holds() -> String {
    format!("{TAG}:holds")
}

/// Zset: runs a hold stopped before their submit, by when they were parked.
pub fn parked() -> String {
    format!("{TAG}:parked")
}

/// Hash: cached action definitions (id → JSON) for workers.
pub fn definitions() -> String {
    format!("{TAG}:definitions")
}
