//! What happened, for operators and metrics: the status counts and the
//! audit stream every transition appends to.

use std::collections::HashMap;

use gcrun_model::RunId;

use crate::{Store, StoreError, keys};

impl Store {
    /// Runs per status, plus `total` (every run ever accepted).
    pub async fn counts(&self) -> Result<HashMap<String, i64>, StoreError> {
        Ok(redis::cmd("HGETALL").arg(keys::counts()).query_async(&mut self.conn()).await?)
    }

    /// Entries in the audit stream.
    pub async fn audit_len(&self) -> Result<u64, StoreError> {
        Ok(redis::cmd("XLEN").arg(keys::audit()).query_async(&mut self.conn()).await?)
    }

    /// The audit entries of one run (scans the stream: for tests and
    /// operators, not hot paths).
    pub async fn audit_for(&self, id: &RunId) -> Result<Vec<HashMap<String, String>>, StoreError> {
        let reply: redis::streams::StreamRangeReply =
            redis::cmd("XRANGE").arg(keys::audit()).arg("-").arg("+").query_async(&mut self.conn()).await?;
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
