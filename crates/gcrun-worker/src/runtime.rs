//! Running the workers: one apalis Monitor with a worker per queue, the
//! admin HTTP server (metrics, health), retention, graceful shutdown.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use apalis::prelude::{BackendExt, Event, Monitor, PollSnapshot, PollStrategy, WorkerBuilder, WorkerBuilderExt};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::handlers::{Ctx, now_ms};
use crate::jobs::{Queues, poll_job, submit_job, webhook_job};

/// How many jobs each queue's worker runs at once, and how fast idle
/// workers look for new jobs.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub submit_concurrency: usize,
    pub poll_concurrency: usize,
    pub webhook_concurrency: usize,
    /// Idle fetch interval: the pickup latency of a new job.
    pub poll_interval: Duration,
    /// In-flight jobs get this long to finish after a shutdown signal.
    pub shutdown_timeout: Duration,
    /// Finished jobs are forgotten after this long.
    pub done_retention: Duration,
    /// How often the sweeper looks for runs past their deadline that have
    /// not ended (their job chain was lost), and how far past it they must be.
    pub sweep_interval: Duration,
    pub sweep_grace: Duration,
    /// A name unique to this process (host, pid, random), so two processes
    /// never share a worker name (apalis refuses or mis-recovers them).
    pub instance: String,
}

impl Default for RunSettings {
    fn default() -> Self {
        Self {
            submit_concurrency: 16,
            poll_concurrency: 32,
            webhook_concurrency: 16,
            poll_interval: Duration::from_millis(50),
            shutdown_timeout: Duration::from_secs(30),
            done_retention: Duration::from_secs(3_600),
            sweep_interval: Duration::from_secs(30),
            sweep_grace: Duration::from_secs(60),
            instance: default_instance(),
        }
    }
}

/// `<host>-<pid>-<random>`.
pub fn default_instance() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "gcrun".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..8])
}

/// An idle-fetch timer that re-arms itself every time it fires.
/// apalis's built-in `poll_with_interval` can lose its wake-up when a fetch
/// comes back empty in the same poll, leaving an idle worker asleep until
/// its next heartbeat (seconds); this one always has a timer armed.
struct Rearming {
    every: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Rearming {
    fn new(every: Duration) -> Self {
        Self { every, sleep: Box::pin(tokio::time::sleep(every)) }
    }
}

impl PollStrategy for Rearming {
    fn poll_drive(&mut self, cx: &mut Context<'_>, _snapshot: &PollSnapshot) -> Poll<Option<()>> {
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sleep.as_mut().reset(tokio::time::Instant::now() + self.every);
        // Register the waker for the next tick before reporting this one.
        let _ = self.sleep.as_mut().poll(cx);
        Poll::Ready(Some(()))
    }
}

/// Whether the workers are up, for `/readyz`.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, up: bool) {
        self.0.store(up, Ordering::SeqCst);
    }
    pub fn get(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Runs the workers until `shutdown` completes, then stops fetching and
/// gives in-flight jobs `shutdown_timeout` to finish. Jobs still running
/// then are left in flight and re-delivered by another worker after the
/// heartbeat timeout: handlers are idempotent.
pub async fn run_workers(
    ctx: Arc<Ctx>,
    queues: Queues,
    settings: RunSettings,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let instance = settings.instance.clone();
    let every = settings.poll_interval;
    let (c1, c2, c3) = (ctx.clone(), ctx.clone(), ctx.clone());
    let (q1, q2, q3) = (queues.clone(), queues.clone(), queues.clone());
    let (i1, i2, i3) = (instance.clone(), instance.clone(), instance.clone());
    let (n1, n2, n3) = (settings.submit_concurrency, settings.poll_concurrency, settings.webhook_concurrency);
    let monitor = Monitor::new()
        .register(move |restarts| {
            WorkerBuilder::new(format!("submit-{i1}-r{restarts}"))
                .backend(q1.submit.clone().poll_with_strategy(Rearming::new(every)))
                .data(c1.clone())
                .data(q1.clone())
                .concurrency(n1.max(1))
                .build(submit_job)
        })
        .register(move |restarts| {
            WorkerBuilder::new(format!("poll-{i2}-r{restarts}"))
                .backend(q2.poll.clone().poll_with_strategy(Rearming::new(every)))
                .data(c2.clone())
                .data(q2.clone())
                .concurrency(n2.max(1))
                .build(poll_job)
        })
        .register(move |restarts| {
            WorkerBuilder::new(format!("webhook-{i3}-r{restarts}"))
                .backend(q3.webhook.clone().poll_with_strategy(Rearming::new(every)))
                .data(c3.clone())
                .data(q3.clone())
                .concurrency(n3.max(1))
                .build(webhook_job)
        })
        .on_event(|worker, event| {
            if let Event::Error(e) = event {
                tracing::warn!(worker = %worker.name(), error = %e, "worker error");
            }
        })
        // Any Redis error stops an apalis worker; restarting it is how the
        // pool survives a blip. The pause keeps a Redis outage from turning
        // into a tight restart loop.
        .should_restart(|worker, error| {
            tracing::warn!(worker = %worker.name(), %error, restarts = worker.restarts(), "restarting worker");
            // Blocks a runtime thread briefly: apalis calls this synchronously
            // and has no restart backoff of its own.
            std::thread::sleep(Duration::from_millis((50 * (worker.restarts() as u64 + 1)).min(500)));
            true
        })
        .shutdown_timeout(settings.shutdown_timeout);

    let retention = tokio::spawn(retention_loop(ctx.clone(), queues.clone(), settings.clone()));
    readiness.set(true);
    tracing::info!(instance = %instance, "workers started");
    let result = monitor
        .run_with_signal(async move {
            shutdown.await;
            tracing::info!("shutdown requested: no new jobs; waiting for in-flight jobs");
            Ok(())
        })
        .await;
    readiness.set(false);
    retention.abort();
    tracing::info!("workers stopped");
    result.map_err(std::io::Error::other)
}

/// Housekeeping: trims each queue's `done` set, and sweeps runs that are
/// past their deadline without having ended (a lost job chain) by pushing a
/// submit job for each: the submit step resumes whatever state the run is
/// in, and the deadline then ends it. Pushes are idempotent in effect, so
/// several workers sweeping at once do no harm.
async fn retention_loop(ctx: Arc<Ctx>, queues: Queues, settings: RunSettings) {
    let mut tick = tokio::time::interval(settings.sweep_interval.max(Duration::from_millis(10)));
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        ticks += 1;
        let now = now_ms();
        match ctx.store.overdue(now, settings.sweep_grace.as_millis() as u64, 500).await {
            Ok(ids) => {
                for id in ids {
                    tracing::warn!(run = %id, "run is past its deadline without an end; driving it on");
                    if let Err(e) = queues.push_submit(id, Duration::ZERO).await {
                        tracing::warn!(error = %e, "sweep push failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "sweep failed"),
        }
        // Trimming is heavier: about every 30 s whatever the sweep interval.
        let every = (30_000 / settings.sweep_interval.as_millis().max(1) as u64).max(1);
        if (ticks - 1) % every != 0 {
            continue;
        }
        for q in queues.names.all() {
            match ctx.store.trim_done(q, now / 1000, settings.done_retention.as_secs(), 1_000).await {
                Ok(n) if n > 0 => tracing::debug!(queue = q, removed = n, "trimmed finished jobs"),
                Ok(_) => {}
                Err(e) => tracing::warn!(queue = q, error = %e, "retention failed"),
            }
        }
    }
}

#[derive(Clone)]
struct AdminState {
    ctx: Arc<Ctx>,
    queues: Queues,
    readiness: Readiness,
}

/// The admin server: `/metrics`, `/healthz`, `/readyz`. Takes its listener
/// and shutdown from the caller.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    ctx: Arc<Ctx>,
    queues: Queues,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(AdminState { ctx, queues, readiness });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    for q in s.queues.names.all() {
        if let Ok(d) = s.ctx.store.queue_depth(q).await {
            for (state, n) in [
                ("ready", d.ready),
                ("scheduled", d.scheduled),
                ("in_flight", d.in_flight),
                ("done", d.done),
                ("dead", d.dead),
            ] {
                s.ctx
                    .metrics
                    .queue_depth
                    .get_or_create(&crate::metrics::QueueLabels { queue: q.to_string(), state: state.into() })
                    .set(n as i64);
            }
        }
    }
    if let Ok(n) = s.ctx.store.dlq_len().await {
        s.ctx.metrics.dead_letter_size.set(n as i64);
    }
    ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], s.ctx.metrics.encode())
}

async fn ready(State(s): State<AdminState>) -> impl IntoResponse {
    if !s.readiness.get() {
        return (StatusCode::SERVICE_UNAVAILABLE, "workers not running".to_string());
    }
    match s.ctx.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready".to_string()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("redis unreachable: {e}")),
    }
}
