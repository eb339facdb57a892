//! Paging through the store's indexes for operators: every run by when it
//! was accepted (`runs list`, the dashboard's run list) and the dead-letter
//! set by when each run got there (`dlq list`, the dashboard's browser).
//!
//! A page costs the same at any depth: it starts at the rank of the
//! cursor's entry (`ZRANK`, O(log n)) and reads records in pipelined
//! batches, so the 100,000th entry is as quick to reach as the first. A
//! filter that matches little does not turn a request into a full scan:
//! each page examines at most [`PageRequest::budget`] entries and hands
//! back a cursor where it stopped, and the caller asks again.

use std::collections::HashMap;

use gcrun_model::{Flavor, RunId, RunStatus};

use crate::record::RunRecord;
use crate::{Store, StoreError};

/// Entries read per round trip while filling a page.
const BATCH: usize = 200;

/// Which runs to list, requeue or purge. Empty = all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    pub flavor: Option<Flavor>,
    /// Action or flow id.
    pub target: Option<String>,
    /// Case-insensitive substring of the stored reason (`last_error`).
    pub reason_contains: Option<String>,
    /// The ingest client that sent the run.
    pub client: Option<String>,
    /// Metadata pairs the request must carry, all of them.
    pub metadata: Vec<(String, String)>,
    /// At or after this time (ms) by the index's clock: when a run was
    /// dead-lettered in the dead-letter set, when it was accepted in the
    /// run index.
    pub since_ms: Option<u64>,
    /// Before this time (ms), by the same clock.
    pub until_ms: Option<u64>,
    /// At most this many (for the whole listing, not a page).
    pub limit: Option<usize>,
}

impl RunFilter {
    /// Whether `r` passes every field but the time window (which the index
    /// applies).
    pub fn matches(&self, r: &RunRecord) -> bool {
        self.status.is_none_or(|s| s == r.status)
            && self.flavor.is_none_or(|f| f == r.flavor)
            && self.target.as_ref().is_none_or(|t| *t == r.target)
            && self.client.as_ref().is_none_or(|c| r.client.as_ref() == Some(c))
            && self
                .reason_contains
                .as_ref()
                .is_none_or(|s| r.last_error.as_deref().unwrap_or_default().to_lowercase().contains(&s.to_lowercase()))
            && self.metadata.iter().all(|(k, v)| r.request.metadata().get(k) == Some(v))
    }

    /// Whether the filter looks at anything a record holds (a page of an
    /// unfiltered listing reads exactly the records it shows).
    fn reads_records(&self) -> bool {
        self.status.is_some()
            || self.flavor.is_some()
            || self.target.is_some()
            || self.reason_contains.is_some()
            || self.client.is_some()
            || !self.metadata.is_empty()
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest<'a> {
    /// Start after this entry (a [`Page::next`] of an earlier call).
    pub after: Option<&'a str>,
    /// Runs on the page, at most.
    pub limit: usize,
    pub newest_first: bool,
    /// Index entries examined, at most, before the page is handed back
    /// short (with a cursor) for the caller to ask again.
    pub budget: usize,
}

impl Default for PageRequest<'_> {
    fn default() -> Self {
        Self { after: None, limit: 50, newest_first: false, budget: 5_000 }
    }
}

/// A page of runs, the cursor of the next one (`None`: the listing ended),
/// and how many index entries it examined.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub runs: Vec<RunRecord>,
    pub next: Option<String>,
    pub examined: usize,
    /// Entries on the page whose record exists but can no longer be read
    /// (id, the reason stored with it), for an unfiltered listing: a filter
    /// cannot be applied to what does not parse.
    pub unreadable: Vec<(String, String)>,
}

/// One record as a page reads it.
enum Fetched {
    Run(Box<RunRecord>),
    Gone,
    /// The record is there but does not parse: its stored reason.
    Unreadable(String),
}

/// A cursor: the score and member of the last entry examined.
fn cursor(score: f64, member: &str) -> String {
    format!("{score}:{member}")
}

fn parse_cursor(c: &str) -> Option<(f64, &str)> {
    let (score, member) = c.split_once(':')?;
    Some((score.parse().ok()?, member))
}

impl Store {
    /// Every run the store holds, by when it was accepted. Runs accepted
    /// before the index existed (an upgrade) are not in it.
    pub async fn runs_page(&self, filter: &RunFilter, page: &PageRequest<'_>) -> Result<Page, StoreError> {
        self.index_page(&self.keys.runs(), filter, page).await
    }

    /// Runs in the index.
    pub async fn runs_len(&self) -> Result<u64, StoreError> {
        Ok(redis::cmd("ZCARD").arg(self.keys.runs()).query_async(&mut self.conn()).await?)
    }

    /// Dead-lettered runs, by when they got there.
    pub async fn dlq_page(&self, filter: &RunFilter, page: &PageRequest<'_>) -> Result<Page, StoreError> {
        self.index_page(&self.keys.dlq(), filter, page).await
    }

    /// The records of `ids`, in one round trip: `None` where a record is
    /// gone or can no longer be read.
    pub async fn get_runs(&self, ids: &[RunId]) -> Result<Vec<Option<RunRecord>>, StoreError> {
        Ok(self
            .fetch_runs(ids)
            .await?
            .into_iter()
            .map(|f| match f {
                Fetched::Run(r) => Some(*r),
                Fetched::Gone | Fetched::Unreadable(_) => None,
            })
            .collect())
    }

    async fn fetch_runs(&self, ids: &[RunId]) -> Result<Vec<Fetched>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HGETALL").arg(self.keys.run(id));
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut self.conn()).await?;
        Ok(ids
            .iter()
            .zip(hashes)
            .map(|(id, h)| {
                if h.is_empty() {
                    return Fetched::Gone;
                }
                match RunRecord::from_hash(&id.to_string(), &h) {
                    Ok(r) => Fetched::Run(Box::new(r)),
                    Err(e) => Fetched::Unreadable(h.get("last_error").cloned().unwrap_or_else(|| e.to_string())),
                }
            })
            .collect())
    }

    /// The rank (in the page's order) of the first entry after `after`, or
    /// of the window's start.
    async fn start_rank(&self, key: &str, filter: &RunFilter, page: &PageRequest<'_>) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        // Entries before the window, in the page's order.
        let window: u64 = match (page.newest_first, filter.since_ms, filter.until_ms) {
            (false, Some(since), _) => {
                redis::cmd("ZCOUNT").arg(key).arg("-inf").arg(format!("({since}")).query_async(&mut conn).await?
            }
            (true, _, Some(until)) => {
                redis::cmd("ZCOUNT").arg(key).arg(until).arg("+inf").query_async(&mut conn).await?
            }
            _ => 0,
        };
        let Some((score, member)) = page.after.and_then(parse_cursor) else { return Ok(window) };
        let rank: Option<u64> = redis::cmd(if page.newest_first { "ZREVRANK" } else { "ZRANK" })
            .arg(key)
            .arg(member)
            .query_async(&mut conn)
            .await?;
        let after = match rank {
            Some(r) => r + 1,
            // The entry left the index (requeued, purged): start at the
            // first entry past its score. Entries sharing that score are
            // ordered by member, and the page skips those at or before it.
            None if page.newest_first => {
                redis::cmd("ZCOUNT").arg(key).arg(format!("({score}")).arg("+inf").query_async(&mut conn).await?
            }
            None => redis::cmd("ZCOUNT").arg(key).arg("-inf").arg(format!("({score}")).query_async(&mut conn).await?,
        };
        Ok(after.max(window))
    }

    async fn index_page(&self, key: &str, filter: &RunFilter, page: &PageRequest<'_>) -> Result<Page, StoreError> {
        let mut conn = self.conn();
        let mut rank = self.start_rank(key, filter, page).await?;
        let limit = page.limit.max(1);
        let budget = page.budget.max(limit);
        let skip_through = page.after.and_then(parse_cursor);
        let (mut runs, mut examined, mut last) = (Vec::new(), 0usize, None);
        let mut unreadable = Vec::new();
        loop {
            let want = if filter.reads_records() { BATCH.min(budget - examined) } else { limit - runs.len() };
            let entries: Vec<(String, f64)> = redis::cmd(if page.newest_first { "ZREVRANGE" } else { "ZRANGE" })
                .arg(key)
                .arg(rank)
                .arg(rank + want as u64 - 1)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await?;
            let got = entries.len();
            // Past the window's far end, the listing is over.
            let in_window = |score: f64| match page.newest_first {
                false => filter.until_ms.is_none_or(|u| score < u as f64),
                true => filter.since_ms.is_none_or(|s| score >= s as f64),
            };
            let mut ended = got < want;
            let mut batch = Vec::with_capacity(got);
            for (member, score) in entries {
                if !in_window(score) {
                    ended = true;
                    break;
                }
                // A cursor whose entry left: skip what shares its score and
                // sorts at or before it (it was on an earlier page).
                let seen = skip_through.is_some_and(|(s, m)| {
                    score == s && if page.newest_first { member.as_str() >= m } else { member.as_str() <= m }
                });
                batch.push((member, score, seen));
            }
            let ids: Vec<RunId> =
                batch.iter().filter_map(|(m, _, seen)| if *seen { None } else { m.parse().ok() }).collect();
            let mut records = self.fetch_runs(&ids).await?.into_iter();
            for (member, score, seen) in &batch {
                if runs.len() >= limit {
                    // The page filled mid-batch: the next starts after the
                    // last entry examined.
                    return Ok(Page { runs, next: last, examined, unreadable });
                }
                examined += 1;
                last = Some(cursor(*score, member));
                if *seen || member.parse::<RunId>().is_err() {
                    continue;
                }
                match records.next() {
                    Some(Fetched::Run(r)) if filter.matches(&r) => runs.push(*r),
                    Some(Fetched::Unreadable(reason)) if !filter.reads_records() => {
                        unreadable.push((member.clone(), reason));
                    }
                    _ => {}
                }
            }
            let got = batch.len();
            rank += got as u64;
            if ended {
                return Ok(Page { runs, next: None, examined, unreadable });
            }
            if runs.len() >= limit || examined >= budget {
                return Ok(Page { runs, next: last, examined, unreadable });
            }
        }
    }
}
