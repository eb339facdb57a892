//! Operators' holds: a flavor or one action paused so no new run of it is
//! submitted (Genesys is down for that integration, say), nothing lost.
//! A run its hold stops is parked in `{gcrun}:parked`; a resume pushes the
//! parked runs' submit jobs again, a slice at a time. (Whole queues are
//! paused in the queue engine.)

use gcrun_model::{Flavor, RunId};

use crate::record::RunRecord;
use crate::{Store, StoreError};

static PARK: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("../lua/park.lua")));

/// What a hold covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldScope {
    Flavor(Flavor),
    /// One action or flow id.
    Target(String),
}

impl HoldScope {
    /// The field of `{gcrun}:holds` (`flavor:runs`, `target:<id>`).
    pub fn key(&self) -> String {
        match self {
            HoldScope::Flavor(f) => format!("flavor:{f}"),
            HoldScope::Target(t) => format!("target:{t}"),
        }
    }

    pub fn parse(key: &str) -> Option<Self> {
        match key.split_once(':')? {
            ("flavor", f) => f.parse().ok().map(HoldScope::Flavor),
            ("target", t) if !t.is_empty() => Some(HoldScope::Target(t.to_string())),
            _ => None,
        }
    }

    /// The scopes a run falls under.
    pub fn of(rec: &RunRecord) -> [HoldScope; 2] {
        [HoldScope::Flavor(rec.flavor), HoldScope::Target(rec.target.clone())]
    }
}

impl std::fmt::Display for HoldScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key())
    }
}

impl Store {
    /// Holds `scope` (`note`: who, why, when, as the operator's tools
    /// write it). Runs already submitted go on; new ones wait.
    pub async fn hold(&self, scope: &HoldScope, note: &str) -> Result<(), StoreError> {
        let _: i64 =
            redis::cmd("HSET").arg(self.keys.holds()).arg(scope.key()).arg(note).query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Lifts a hold; `false` when there was none. The caller then pushes
    /// the parked runs' jobs again ([`parked_slice`](Self::parked_slice),
    /// [`unpark`](Self::unpark)).
    pub async fn release_hold(&self, scope: &HoldScope) -> Result<bool, StoreError> {
        let n: i64 = redis::cmd("HDEL").arg(self.keys.holds()).arg(scope.key()).query_async(&mut self.conn()).await?;
        Ok(n == 1)
    }

    /// Every hold standing, by scope key, with its note.
    pub async fn holds(&self) -> Result<Vec<(String, String)>, StoreError> {
        let h: std::collections::BTreeMap<String, String> =
            redis::cmd("HGETALL").arg(self.keys.holds()).query_async(&mut self.conn()).await?;
        Ok(h.into_iter().collect())
    }

    /// Parks `rec` if one of its holds still stands; `false`: none does,
    /// and the run should go on.
    pub async fn park(&self, rec: &RunRecord, now_ms: u64) -> Result<bool, StoreError> {
        let mut inv = PARK.key(self.keys.holds());
        inv.key(self.keys.parked()).arg(rec.id.to_string()).arg(now_ms);
        for scope in HoldScope::of(rec) {
            inv.arg(scope.key());
        }
        let n: i64 = inv.invoke_async(&mut self.conn()).await?;
        Ok(n == 1)
    }

    /// Up to `limit` parked runs, longest parked first.
    pub async fn parked_slice(&self, limit: usize) -> Result<Vec<RunId>, StoreError> {
        let raw: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.keys.parked())
            .arg(0)
            .arg(limit.max(1) - 1)
            .query_async(&mut self.conn())
            .await?;
        Ok(raw.iter().filter_map(|r| r.parse().ok()).collect())
    }

    /// Takes runs off the parked set (once their jobs are pushed: a crash
    /// in between pushes a job twice, which the steps absorb, rather than
    /// losing a run).
    pub async fn unpark(&self, ids: &[RunId]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let members: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let _: i64 = redis::cmd("ZREM").arg(self.keys.parked()).arg(&members).query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Runs parked by holds now.
    pub async fn parked_len(&self) -> Result<u64, StoreError> {
        Ok(redis::cmd("ZCARD").arg(self.keys.parked()).query_async(&mut self.conn()).await?)
    }
}
