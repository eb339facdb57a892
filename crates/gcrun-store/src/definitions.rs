//! Action definitions cached in Redis, shared by every worker, so that a
//! fleet of workers asks Genesys once per definition TTL, not once each.

use crate::{Store, StoreError};

impl Store {
    /// Caches an action definition (JSON) for workers; `ttl` bounds staleness.
    pub async fn cache_definition(&self, id: &str, json: &str, ttl_ms: u64, now_ms: u64) -> Result<(), StoreError> {
        let value = serde_json::json!({"at": now_ms, "ttl": ttl_ms, "def": json}).to_string();
        let _: () =
            redis::cmd("HSET").arg(self.keys.definitions()).arg(id).arg(value).query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// A cached definition that is still fresh at `now_ms`.
    pub async fn cached_definition(&self, id: &str, now_ms: u64) -> Result<Option<String>, StoreError> {
        let raw: Option<String> =
            redis::cmd("HGET").arg(self.keys.definitions()).arg(id).query_async(&mut self.conn()).await?;
        let Some(raw) = raw else { return Ok(None) };
        let v: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
        let fresh = v["at"].as_u64().zip(v["ttl"].as_u64()).is_some_and(|(at, ttl)| now_ms < at.saturating_add(ttl));
        Ok(if fresh { v["def"].as_str().map(str::to_owned) } else { None })
    }
}
