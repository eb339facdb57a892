//! What happened, for operators and metrics: the status counts and the
//! audit stream every transition appends to.

use std::collections::HashMap;

use gcrun_model::RunId;

use crate::{Store, StoreError};

/// One entry of the audit stream: a run's transition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// The stream id (`<ms>-<seq>`): resume an export after it.
    pub id: String,
    pub run: String,
    /// Empty for the first (`accepted`).
    pub from: String,
    pub to: String,
    pub at_ms: u64,
    pub cause: String,
    /// The upstream's correlation id, on a run's first (`accepted`) entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation: Option<String>,
}

impl AuditEntry {
    fn from_stream(id: String, map: HashMap<String, redis::Value>) -> Self {
        let get =
            |k: &str| map.get(k).and_then(|v| redis::from_redis_value::<String>(v.clone()).ok()).unwrap_or_default();
        Self {
            run: get("run"),
            from: get("from"),
            to: get("to"),
            at_ms: get("at").parse().unwrap_or(0),
            cause: get("cause"),
            correlation: Some(get("correlation")).filter(|c| !c.is_empty()),
            id,
        }
    }
}

impl Store {
    /// Audit entries after `after` (a stream id; `None`: from the oldest
    /// kept, or from `since_ms`), before `until_ms`, at most `count`:
    /// an export reads a page, then asks again after its last id.
    pub async fn audit_page(
        &self,
        after: Option<&str>,
        since_ms: Option<u64>,
        until_ms: Option<u64>,
        count: usize,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let start = match (after, since_ms) {
            (Some(id), _) => format!("({id}"),
            (None, Some(ms)) => format!("{ms}-0"),
            (None, None) => "-".into(),
        };
        // Stream ids before `until` ms: up to the last sequence of the ms before.
        let end = until_ms.map_or("+".to_string(), |u| format!("({u}-0"));
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(self.keys.audit())
            .arg(start)
            .arg(end)
            .arg("COUNT")
            .arg(count.max(1))
            .query_async(&mut self.conn())
            .await?;
        Ok(reply.ids.into_iter().map(|e| AuditEntry::from_stream(e.id, e.map)).collect())
    }

    /// Waits up to `block` for audit entries after `after` (`$`: only new
    /// ones). For a dedicated connection's caller (`runs tail`): a
    /// blocking read holds up whatever else shares the connection.
    pub async fn audit_follow(&self, after: &str, block: std::time::Duration) -> Result<Vec<AuditEntry>, StoreError> {
        let reply: Option<redis::streams::StreamReadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1_000)
            .arg("BLOCK")
            .arg(block.as_millis() as u64)
            .arg("STREAMS")
            .arg(self.keys.audit())
            .arg(after)
            .query_async(&mut self.conn())
            .await?;
        Ok(reply
            .into_iter()
            .flat_map(|r| r.keys)
            .flat_map(|k| k.ids)
            .map(|e| AuditEntry::from_stream(e.id, e.map))
            .collect())
    }

    /// The id of the newest audit entry (`0-0` when none), for a follower
    /// that starts now.
    pub async fn audit_last_id(&self) -> Result<String, StoreError> {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
            .arg(self.keys.audit())
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn())
            .await?;
        Ok(reply.ids.into_iter().next().map_or("0-0".into(), |e| e.id))
    }

    /// What retention took out: ended runs whose record expired, by status.
    pub async fn trimmed(&self) -> Result<HashMap<String, i64>, StoreError> {
        Ok(redis::cmd("HGETALL").arg(self.keys.trimmed()).query_async(&mut self.conn()).await?)
    }

    /// Runs per status, plus `total` (every run ever accepted).
    pub async fn counts(&self) -> Result<HashMap<String, i64>, StoreError> {
        Ok(redis::cmd("HGETALL").arg(self.keys.counts()).query_async(&mut self.conn()).await?)
    }

    /// Entries in the audit stream.
    pub async fn audit_len(&self) -> Result<u64, StoreError> {
        Ok(redis::cmd("XLEN").arg(self.keys.audit()).query_async(&mut self.conn()).await?)
    }

    /// The audit entries of one run (scans the stream: for tests and
    /// operators, not hot paths).
    pub async fn audit_for(&self, id: &RunId) -> Result<Vec<HashMap<String, String>>, StoreError> {
        let reply: redis::streams::StreamRangeReply =
            redis::cmd("XRANGE").arg(self.keys.audit()).arg("-").arg("+").query_async(&mut self.conn()).await?;
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
}
