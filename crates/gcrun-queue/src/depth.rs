//! Depths of the apalis queues, read from their keys (apalis-redis keeps no
//! depth gauges), and retention of their `done` sets (it never trims them).
//!
//! apalis-redis 1.0's layout for a queue `Q` (checked with a probe, see
//! ARCHITECTURE.md): `Q:scheduled` zset (every push lands here), `Q:active`
//! list (released or orphaned ids), `Q:inflight:<worker>` sets, `Q:workers`
//! zset, `Q:done` and `Q:dead` sets, `Q:data` hash, `Q:meta:<id>` hashes.

use serde::Serialize;

use crate::Queues;

/// How many jobs a queue holds in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueDepth {
    pub ready: u64,
    pub scheduled: u64,
    pub in_flight: u64,
    pub done: u64,
    pub dead: u64,
}

impl QueueDepth {
    /// Jobs not yet finished (what a drain waits for).
    pub fn pending(&self) -> u64 {
        self.ready + self.scheduled + self.in_flight
    }
}

/// A job in a queue's dead set, with apalis's stored result (the reason).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadJob {
    pub id: String,
    pub payload: Option<String>,
    pub result: Option<String>,
    pub attempts: Option<String>,
}

impl Queues {
    /// Counts one queue's jobs by state.
    pub async fn depth(&self, queue: &str) -> Result<QueueDepth, redis::RedisError> {
        let mut conn = self.conn.clone();
        let workers: Vec<String> =
            redis::cmd("ZRANGE").arg(format!("{queue}:workers")).arg(0).arg(-1).query_async(&mut conn).await?;
        let mut pipe = redis::pipe();
        pipe.cmd("LLEN")
            .arg(format!("{queue}:active"))
            .cmd("ZCARD")
            .arg(format!("{queue}:scheduled"))
            .cmd("SCARD")
            .arg(format!("{queue}:done"))
            .cmd("SCARD")
            .arg(format!("{queue}:dead"));
        for w in &workers {
            pipe.cmd("SCARD").arg(format!("{queue}:inflight:{w}"));
        }
        let counts: Vec<u64> = pipe.query_async(&mut conn).await?;
        Ok(QueueDepth {
            ready: counts.first().copied().unwrap_or(0),
            scheduled: counts.get(1).copied().unwrap_or(0),
            done: counts.get(2).copied().unwrap_or(0),
            dead: counts.get(3).copied().unwrap_or(0),
            in_flight: counts.iter().skip(4).sum(),
        })
    }

    /// The jobs in a queue's dead set (up to `limit`), with their reasons.
    pub async fn dead_jobs(&self, queue: &str, limit: usize) -> Result<Vec<DeadJob>, redis::RedisError> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> =
            redis::cmd("SRANDMEMBER").arg(format!("{queue}:dead")).arg(limit).query_async(&mut conn).await?;
        let mut out = Vec::new();
        for id in ids {
            let payload: Option<String> =
                redis::cmd("HGET").arg(format!("{queue}:data")).arg(&id).query_async(&mut conn).await?;
            let (result, attempts): (Option<String>, Option<String>) = redis::cmd("HMGET")
                .arg(format!("{queue}:meta:{id}"))
                .arg("result")
                .arg("attempts")
                .query_async(&mut conn)
                .await?;
            out.push(DeadJob { id, payload, result, attempts });
        }
        Ok(out)
    }

    /// Forgets finished jobs older than `older_than_secs` (by their
    /// `done_at`), removing at most `max` per call and walking the whole set
    /// with SSCAN so no part of it is skipped. Returns how many were removed.
    pub async fn trim_done(
        &self,
        queue: &str,
        now_secs: u64,
        older_than_secs: u64,
        max: usize,
    ) -> Result<usize, redis::RedisError> {
        let mut conn = self.conn.clone();
        let cutoff = now_secs.saturating_sub(older_than_secs);
        let done_key = format!("{queue}:done");
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let (next, ids): (u64, Vec<String>) =
                redis::cmd("SSCAN").arg(&done_key).arg(cursor).arg("COUNT").arg(500).query_async(&mut conn).await?;
            for id in ids {
                if removed >= max {
                    return Ok(removed);
                }
                let meta_key = format!("{queue}:meta:{id}");
                let done_at: Option<u64> =
                    redis::cmd("HGET").arg(&meta_key).arg("done_at").query_async(&mut conn).await?;
                if done_at.is_some_and(|t| t <= cutoff) {
                    let mut pipe = redis::pipe();
                    pipe.atomic()
                        .cmd("SREM")
                        .arg(&done_key)
                        .arg(&id)
                        .ignore()
                        .cmd("HDEL")
                        .arg(format!("{queue}:data"))
                        .arg(&id)
                        .ignore()
                        .cmd("DEL")
                        .arg(&meta_key)
                        .ignore();
                    let _: () = pipe.query_async(&mut conn).await?;
                    removed += 1;
                }
            }
            cursor = next;
            if cursor == 0 {
                return Ok(removed);
            }
        }
    }
}
