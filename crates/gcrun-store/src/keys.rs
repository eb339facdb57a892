//! Every Redis key gcrun itself writes. Nothing outside this module spells a
//! key. All of one tenant's keys share its hash tag (`{gcrun}` for the
//! default tenant, see [`Tenant::tag`]): a transition touches the run, its
//! history, the audit stream, the counts and the dead-letter index in one
//! script, which Redis Cluster allows only within one slot.

use gcrun_model::{RunId, Tenant};

/// One tenant's key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    tenant: Tenant,
    tag: String,
}

impl Default for Keys {
    fn default() -> Self {
        Self::of(&Tenant::default())
    }
}

impl Keys {
    pub fn of(tenant: &Tenant) -> Self {
        Self { tenant: tenant.clone(), tag: tenant.tag() }
    }

    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    /// The hash tag every key here starts with.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Hash: one run's record.
    pub fn run(&self, id: &RunId) -> String {
        format!("{tag}:run:{id}", tag = self.tag)
    }

    /// List: one run's transitions, as JSON, oldest first.
    pub fn history(&self, id: &RunId) -> String {
        format!("{tag}:run:{id}:history", tag = self.tag)
    }

    /// Stream: every transition of every run (capped).
    pub fn audit(&self) -> String {
        format!("{tag}:audit", tag = self.tag)
    }

    /// Hash: status → number of runs in it.
    pub fn counts(&self) -> String {
        format!("{tag}:counts", tag = self.tag)
    }

    /// Sorted set: dead-lettered run ids, scored by when they got there (ms).
    pub fn dlq(&self) -> String {
        format!("{tag}:dlq", tag = self.tag)
    }

    /// Sorted set: every run the store holds, scored by when it was accepted
    /// (ms): the index `runs list` and the dashboard page through.
    pub fn runs(&self) -> String {
        format!("{tag}:runs", tag = self.tag)
    }

    /// Sorted set: runs that have not ended, scored by their deadline (ms).
    pub fn open(&self) -> String {
        format!("{tag}:open", tag = self.tag)
    }

    /// Sorted set: ended runs by when their record expires
    /// (`<status>|<id>`), so the sweeper can take expired ones out of the
    /// counts and indexes.
    pub fn expiring(&self) -> String {
        format!("{tag}:expiring", tag = self.tag)
    }

    /// Sorted set: runs whose webhook is dead, scored by when (ms).
    pub fn webhook_dlq(&self) -> String {
        format!("{tag}:webhook-dlq", tag = self.tag)
    }

    /// String: idempotency key → run id.
    pub fn idempotency_of(&self, client: Option<&str>, key: &str) -> String {
        match client {
            // Client names have no ':', and no library key starts with the
            // client prefix, so the two spaces cannot meet.
            Some(client) => format!("{tag}:idem-client:{client}:{key}", tag = self.tag),
            None => self.idempotency(key),
        }
    }

    /// String: an idempotency key (of the library and the CLI) → its run id.
    pub fn idempotency(&self, key: &str) -> String {
        format!("{tag}:idem:{key}", tag = self.tag)
    }

    /// The limiter's keys for one Genesys client. The rate's theoretical
    /// arrival time is in microseconds under `:tat-us`: a release that read
    /// `:tat` as milliseconds would take a microsecond value for a moment
    /// 50,000 years ahead, during a rolling upgrade or after a rollback.
    pub fn limiter(&self, name: &str) -> [String; 3] {
        [
            format!("{tag}:limiter:{name}:tat-us", tag = self.tag),
            format!("{tag}:limiter:{name}:leases", tag = self.tag),
            format!("{tag}:limiter:{name}:pause", tag = self.tag),
        ]
    }

    /// Zset: runs of one client waiting for a concurrency slot, by when they
    /// began to wait (a release wakes the first).
    pub fn limiter_waiting(&self, name: &str) -> String {
        format!("{tag}:limiter:{name}:waiting", tag = self.tag)
    }

    /// Zset: ended runs whose webhook is still owed (pending), by when it was
    /// last seen owed; the sweeper checks that each still has its delivery job.
    pub fn webhooks_owed(&self) -> String {
        format!("{tag}:webhooks-owed", tag = self.tag)
    }

    /// Zset: the permits granted in the last rate window (by grant ms), the
    /// limit's hard cap.
    pub fn limiter_granted(&self, name: &str) -> String {
        format!("{tag}:limiter:{name}:granted", tag = self.tag)
    }

    /// Zset: runs of one client told to wait for the rate, by the moment the
    /// token reserved for each is due.
    pub fn limiter_reserved(&self, name: &str) -> String {
        format!("{tag}:limiter:{name}:reserved", tag = self.tag)
    }

    /// Hash: limiter name → the limits its workers were given (JSON).
    pub fn limiters(&self) -> String {
        format!("{tag}:limiters", tag = self.tag)
    }

    /// Hash: status → ended runs whose record expired (the sweeper took them
    /// out of the counts), for operators to see what retention dropped.
    pub fn trimmed(&self) -> String {
        format!("{tag}:trimmed", tag = self.tag)
    }

    /// Hash: operators' holds, scope (`flavor:runs`, `target:<id>`) → note.
    pub fn holds(&self) -> String {
        format!("{tag}:holds", tag = self.tag)
    }

    /// Zset: runs a hold stopped before their submit, by when they were parked.
    pub fn parked(&self) -> String {
        format!("{tag}:parked", tag = self.tag)
    }

    /// Hash: cached action definitions (id → JSON) for workers.
    pub fn definitions(&self) -> String {
        format!("{tag}:definitions", tag = self.tag)
    }
}
