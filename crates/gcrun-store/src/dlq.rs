//! The dead-letter set as operators see it: runs that ended `rejected`
//! (invalid input) or `dead` (gcrun gave up), each with its stored reason.

use gcrun_model::{RunId, RunStatus};

use crate::query::PageRequest;
use crate::record::RunRecord;
use crate::runs::TransitionOutcome;
use crate::{Store, StoreError};

static PURGE: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(include_str!("../lua/purge_run.lua")));

/// Which dead-lettered runs to list, requeue or purge (`since_ms` and
/// `until_ms`: when they were dead-lettered).
pub type DlqFilter = crate::query::RunFilter;

impl Store {
    /// Number of runs in the dead-letter set.
    pub async fn dlq_len(&self) -> Result<u64, StoreError> {
        Ok(redis::cmd("ZCARD").arg(self.keys.dlq()).query_async(&mut self.conn()).await?)
    }

    /// Every dead-lettered run matching `filter` (up to its limit), oldest
    /// first, read a page at a time (see [`Store::dlq_page`]). Entries whose
    /// record expired or can no longer be read are skipped (the sweeper
    /// takes the first out of the index; [`Store::dlq_unreadable`] lists
    /// the second).
    pub async fn dlq_list(&self, filter: &DlqFilter) -> Result<Vec<RunRecord>, StoreError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let want = filter.limit.map_or(1_000, |l| l.saturating_sub(out.len()).min(1_000));
            if want == 0 {
                return Ok(out);
            }
            let page = PageRequest { after: after.as_deref(), limit: want, newest_first: false, budget: 10_000 };
            let got = self.dlq_page(filter, &page).await?;
            out.extend(got.runs);
            match got.next {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Dead-lettered runs whose record can no longer be read (the listing
    /// skips them), with the reason stored when they were quarantined:
    /// for an operator to look at by hand, or purge.
    /// Reads the whole set a page at a time (pipelined); a listing shows
    /// the same entries page by page in [`Page::unreadable`](crate::Page).
    pub async fn dlq_unreadable(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        let all = DlqFilter::default();
        loop {
            let page = PageRequest { after: after.as_deref(), limit: 1_000, newest_first: false, budget: 10_000 };
            let got = self.dlq_page(&all, &page).await?;
            out.extend(got.unreadable);
            match got.next {
                Some(next) => after = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Takes one dead-lettered run back to `accepted`. The caller then
    /// pushes its submit job (the store knows no queues). A run that was
    /// submitted before keeps its remote id, so it resumes polling rather
    /// than starting a second remote run.
    pub async fn dlq_requeue(&self, id: &RunId, now_ms: u64) -> Result<RunRecord, StoreError> {
        let record = self.get_run(id).await?.ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        match self.requeue_transition(id, &record, now_ms).await? {
            TransitionOutcome::Applied => {}
            TransitionOutcome::Stale(now) => {
                return Err(StoreError::Illegal(gcrun_model::IllegalTransition { from: now, to: RunStatus::Accepted }));
            }
        }
        self.get_run(id).await?.ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    /// Deletes dead-lettered runs matching `filter`; returns how many.
    /// Each is re-checked as it is deleted (one script each), so a purge
    /// racing a requeue never deletes the run the requeue brought back.
    pub async fn dlq_purge(&self, filter: &DlqFilter) -> Result<usize, StoreError> {
        let ids: Vec<RunId> = self.dlq_list(filter).await?.iter().map(|r| r.id).collect();
        self.dlq_purge_ids(&ids).await
    }

    /// Deletes these runs if they are still dead-lettered (an operator
    /// listed them, say, and confirmed); returns how many were.
    pub async fn dlq_purge_ids(&self, ids: &[RunId]) -> Result<usize, StoreError> {
        let mut purged = 0;
        for id in ids {
            let n: i64 = PURGE
                .key(self.keys.run(id))
                .key(self.keys.history(id))
                .key(self.keys.dlq())
                .key(self.keys.open())
                .key(self.keys.counts())
                .key(self.keys.expiring())
                .key(self.keys.runs())
                .arg(id.to_string())
                .invoke_async(&mut self.conn())
                .await?;
            purged += n as usize;
        }
        Ok(purged)
    }
}
