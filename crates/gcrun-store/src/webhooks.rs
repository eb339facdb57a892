//! A run's completion webhook as stored: its delivery attempts, the
//! webhook dead-letter index, and the operator's requeue. Every write is
//! one script and checks the webhook lifecycle (`pending → delivered |
//! dead`, `dead → pending` by requeue) before it reaches Redis.

use std::sync::LazyLock;

use gcrun_model::{RunId, WebhookStatus};
use redis::Script;

use crate::write::{PreparedWrite, WriteKind, WriteOutcome};
use crate::{Store, StoreError};

pub(crate) static STEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(include_str!("../lua/webhook_step.lua"), "return s_webhook_step(KEYS, ARGV)\n"))
});
static REQUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("../lua/webhook_requeue.lua")));

/// What one delivery attempt leaves behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAttempt {
    /// The receiver took it.
    Delivered { at_ms: u64 },
    /// Not delivered; another attempt follows.
    Failed { reason: String },
    /// Given up: the webhook is dead with this reason.
    Dead { reason: String },
}

impl WebhookAttempt {
    fn status(&self) -> Option<WebhookStatus> {
        match self {
            WebhookAttempt::Delivered { .. } => Some(WebhookStatus::Delivered),
            WebhookAttempt::Failed { .. } => None,
            WebhookAttempt::Dead { .. } => Some(WebhookStatus::Dead),
        }
    }
}

/// Why [`Store::webhook_requeue`] did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookRequeue {
    /// Back to pending; its delivery chain now uses this epoch.
    Requeued { epoch: u32 },
    /// The webhook is not dead (delivered, pending, or none).
    NotDead,
}

impl Store {
    /// Records delivery attempt `expected` of a pending webhook, if no
    /// duplicate job recorded it first. `Ok(false)`: one did, or the
    /// webhook is no longer pending.
    pub async fn webhook_attempt(
        &self,
        id: &RunId,
        expected: u32,
        attempt: &WebhookAttempt,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let write = self.prepare_webhook_attempt(id, expected, attempt, now_ms)?;
        Ok(write.run(&STEP, &mut self.conn()).await? == WriteOutcome::Applied)
    }

    /// [`webhook_attempt`](Self::webhook_attempt), prepared for a
    /// composing script.
    pub fn prepare_webhook_attempt(
        &self,
        id: &RunId,
        expected: u32,
        attempt: &WebhookAttempt,
        now_ms: u64,
    ) -> Result<PreparedWrite, StoreError> {
        let status = attempt.status();
        if let Some(to) = status {
            if !WebhookStatus::Pending.can_become(to) {
                return Err(StoreError::Corrupt { run: id.to_string(), detail: format!("webhook pending -> {to:?}") });
            }
        }
        let status = status.map_or("", |s| match s {
            WebhookStatus::Pending => "pending",
            WebhookStatus::Delivered => "delivered",
            WebhookStatus::Dead => "dead",
        });
        let keys = vec![self.keys.run(id), self.keys.webhook_dlq(), self.keys.webhooks_owed()];
        let mut w = PreparedWrite::new(WriteKind::WebhookStep, id.to_string(), keys);
        w.arg(id).arg(expected).arg(status).arg(now_ms);
        match attempt {
            WebhookAttempt::Delivered { at_ms } => w.arg("webhook_delivered_ms").arg(at_ms),
            WebhookAttempt::Failed { reason } | WebhookAttempt::Dead { reason } => {
                w.arg("webhook_last_error").arg(reason)
            }
        };
        Ok(w)
    }

    /// Runs whose webhook is dead.
    pub async fn webhook_dlq_len(&self) -> Result<u64, StoreError> {
        Ok(redis::cmd("ZCARD").arg(self.keys.webhook_dlq()).query_async(&mut self.conn()).await?)
    }

    /// Runs whose webhook is dead, oldest first.
    pub async fn webhook_dlq(&self) -> Result<Vec<RunId>, StoreError> {
        let ids: Vec<String> =
            redis::cmd("ZRANGE").arg(self.keys.webhook_dlq()).arg(0).arg(-1).query_async(&mut self.conn()).await?;
        Ok(ids.iter().filter_map(|i| i.parse().ok()).collect())
    }

    /// Puts a dead webhook back to `pending` with no attempts and a new
    /// epoch (so its new delivery jobs get ids of their own), and out of
    /// the webhook dead-letter index, in one script. The caller pushes its
    /// first delivery job.
    /// Ended runs whose webhook has been owed since before `before_ms`
    /// (Redis's clock), oldest first: the sweeper checks each still has its
    /// delivery job.
    pub async fn webhooks_owed_before(&self, before_ms: u64, limit: usize) -> Result<Vec<RunId>, StoreError> {
        let raw = self.oldest_up_to(&self.keys.webhooks_owed(), before_ms, limit).await?;
        Ok(raw.iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// Marks `id` as seen owed now (its delivery job is alive), or takes it
    /// off the owed index (`owed: false`: delivered, dead or gone).
    pub async fn webhook_owed_seen(&self, id: &RunId, owed: bool) -> Result<(), StoreError> {
        let mut conn = self.conn();
        if owed {
            let now = self.redis_now_ms().await?;
            let _: i64 = redis::cmd("ZADD")
                .arg(self.keys.webhooks_owed())
                .arg(now)
                .arg(id.to_string())
                .query_async(&mut conn)
                .await?;
        } else {
            let _: i64 =
                redis::cmd("ZREM").arg(self.keys.webhooks_owed()).arg(id.to_string()).query_async(&mut conn).await?;
        }
        Ok(())
    }

    pub async fn webhook_requeue(&self, id: &RunId) -> Result<WebhookRequeue, StoreError> {
        debug_assert!(WebhookStatus::Dead.can_become(WebhookStatus::Pending));
        let n: i64 = REQUEUE
            .key(self.keys.run(id))
            .key(self.keys.webhook_dlq())
            .key(self.keys.webhooks_owed())
            .arg(id.to_string())
            .invoke_async(&mut self.conn())
            .await?;
        match n {
            -1 => Err(StoreError::NotFound(id.to_string())),
            0 => Ok(WebhookRequeue::NotDead),
            epoch => Ok(WebhookRequeue::Requeued { epoch: epoch as u32 }),
        }
    }
}
