//! The webhook step: one delivery attempt of a run's completion webhook,
//! then the next attempt, or the webhook's end (delivered or dead).

use gcrun_model::{Jitter, WebhookStatus};
use gcrun_store::{RunRecord, WebhookAttempt};

use super::{Act, Decision, Note, Write, webhook_job, webhook_url};
use crate::config::WorkerConfig;
use crate::webhook::{Delivery, Outgoing, shown_url};

/// What the webhook step needs to find out.
#[derive(Debug, Clone, PartialEq)]
pub enum Need {
    /// The receiver's answer to this request.
    Deliver(Box<Outgoing>),
}

/// What the webhook step learnt.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// The record, with its transitions (the body carries them).
    Loaded,
    Delivered(Delivery),
}

/// Decides delivery `attempt` of `rec`'s webhook.
pub fn decide(
    rec: &RunRecord,
    attempt: u32,
    observation: Observation,
    policy: &WorkerConfig,
    now: u64,
    jitter: &mut Jitter,
) -> Decision<Need> {
    match observation {
        Observation::Loaded => loaded(rec, attempt, policy, now),
        Observation::Delivered(delivery) => delivered(rec, attempt, delivery, policy, now, jitter),
    }
}

fn loaded(rec: &RunRecord, attempt: u32, policy: &WorkerConfig, now: u64) -> Decision<Need> {
    // Only ended runs have something to report (a job from before a
    // requeue finds its run going again).
    if !rec.status.is_terminal() || rec.webhook.status != Some(WebhookStatus::Pending) {
        return Act::nothing().into();
    }
    if rec.webhook.attempts != attempt {
        // As for polls: re-push the current step in case this copy's
        // successor was never pushed; its job id dedupes it.
        return if rec.webhook.attempts == attempt + 1 {
            Act::push(webhook_job(rec, rec.webhook.attempts, std::time::Duration::ZERO)).into()
        } else {
            Act::nothing().into()
        };
    }
    let Some(url) = webhook_url(rec, policy) else { return Act::nothing().into() };
    if let Some(allowed) = &policy.webhook_allowed_hosts {
        if !url.host_str().is_some_and(|h| allowed.iter().any(|a| a.eq_ignore_ascii_case(h))) {
            let reason = format!("host of {} is not in the webhook allow-list", shown_url(&url));
            return dead(attempt, reason).into();
        }
    }
    let mut body = crate::webhook::body(rec, now);
    if !policy.tenant.is_default() {
        body["tenant"] = serde_json::Value::String(policy.tenant.to_string());
    }
    Decision::Need(Need::Deliver(Box::new(Outgoing { url, event_id: crate::webhook::event_id(rec), body })))
}

fn dead(attempt: u32, reason: String) -> Act {
    Act::new(Write::Webhook { expected: attempt, attempt: WebhookAttempt::Dead { reason } }).note(Note::Webhook("dead"))
}

fn delivered(
    rec: &RunRecord,
    attempt: u32,
    delivery: Delivery,
    policy: &WorkerConfig,
    now: u64,
    jitter: &mut Jitter,
) -> Decision<Need> {
    match delivery {
        Delivery::Delivered => {
            Act::new(Write::Webhook { expected: attempt, attempt: WebhookAttempt::Delivered { at_ms: now } })
                .note(Note::Webhook("delivered"))
                .into()
        }
        Delivery::Dead(reason) => dead(attempt, reason).into(),
        Delivery::Retry { reason, after } => {
            let attempts = attempt + 1;
            if attempts >= policy.max_webhook_attempts {
                return dead(attempt, format!("{reason} (after {attempts} attempts)")).into();
            }
            let delay = policy.webhook_schedule.delay_after(attempt, after, jitter);
            Act::new(Write::Webhook { expected: attempt, attempt: WebhookAttempt::Failed { reason } })
                .then_push(webhook_job(rec, attempts, delay))
                .note(Note::Webhook("retried"))
                .note(Note::Retry { stage: "webhook", reason: "delivery".into() })
                .into()
        }
    }
}
