//! The composition root: [`Worker::build`] assembles a worker process from
//! its settings, [`Worker::run`] runs it (one apalis worker per queue, the
//! sweeper, the admin server) until the caller's shutdown future completes.
//! `gcrun worker`, the demo and the test stack all go through here.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use apalis::prelude::{Event, Monitor, WorkerBuilder, WorkerBuilderExt};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use gcrun_genesys::{ClientConfig, Credentials, Environment, GenesysClient};
use gcrun_model::Tenant;
use gcrun_queue::backend::{BackendSettings, EngineBackend};
use gcrun_queue::engine::Queue;
use gcrun_queue::{PollJob, QueueSettings, Queues, SubmitJob, WebhookJob};
use gcrun_store::{LimiterConfig, Store, StoreConfig, StoreError};
use tokio::sync::watch;

use crate::config::WorkerConfig;
use crate::interpret::{Deps, DepsParts, now_ms};
use crate::jobs::{poll_job, submit_job, webhook_job};
use crate::metrics::Metrics;

/// How many jobs each queue's worker runs at once, how fast idle workers
/// look for new jobs, and the housekeeping intervals.
#[derive(Debug, Clone)]
pub struct RunSettings {
    pub submit_concurrency: usize,
    pub poll_concurrency: usize,
    pub webhook_concurrency: usize,
    /// Longest an idle worker waits before it looks again: the pickup
    /// latency of a job pushed by another process (a push from this process
    /// wakes it at once; a scheduled job wakes it when it falls due).
    pub poll_interval: Duration,
    /// In-flight jobs get this long to finish after a shutdown signal.
    pub shutdown_timeout: Duration,
    /// Finished jobs' ids are remembered this long (a push of the same
    /// step within it is ignored), then forgotten.
    pub done_retention: Duration,
    /// Dead jobs (with their payload and reason) are kept this long.
    pub dead_job_retention: Duration,
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
            poll_interval: Duration::from_millis(5_000),
            shutdown_timeout: Duration::from_secs(30),
            done_retention: Duration::from_secs(3_600),
            dead_job_retention: Duration::from_secs(30 * 86_400),
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

/// Where Genesys Cloud is, and who this worker is there.
#[derive(Debug, Clone)]
pub struct GenesysSettings {
    pub environment: Environment,
    pub credentials: Credentials,
    pub client: ClientConfig,
}

/// Everything a worker process is built from. `Debug` leaves out the
/// Redis URL (it may hold a password).
#[derive(Clone)]
pub struct WorkerSettings {
    /// `redis://` or `rediss://` (credentials allowed; never logged), and
    /// the CA to trust for `rediss://`.
    pub redis: gcrun_store::RedisTarget,
    /// The tenant served: its keys, queues and limiter (its Genesys org is
    /// `genesys`). One tenant per worker process, so tenants scale and
    /// fail apart.
    pub tenant: Tenant,
    pub genesys: GenesysSettings,
    pub limiter: LimiterConfig,
    pub policy: WorkerConfig,
    pub run: RunSettings,
    pub queues: QueueSettings,
    pub store: StoreConfig,
    pub webhook_secret: Option<crate::webhook::WebhookKeys>,
    /// Seed of the retry jitter (`None`: from entropy).
    pub jitter_seed: Option<u64>,
}

impl std::fmt::Debug for WorkerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerSettings")
            .field("redis", &self.redis)
            .field("tenant", &self.tenant)
            .field("genesys", &self.genesys)
            .field("limiter", &self.limiter)
            .field("policy", &self.policy)
            .field("run", &self.run)
            .field("queues", &self.queues)
            .field("store", &self.store)
            .field("webhook_secret", &self.webhook_secret)
            .field("jitter_seed", &self.jitter_seed)
            .finish()
    }
}

/// Why a worker could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("connecting to Redis (REDIS_URL): {0}")]
    Redis(#[from] StoreError),
    #[error("building the Genesys Cloud client: {0}")]
    Genesys(#[from] gcrun_genesys::ApiError),
    #[error(transparent)]
    Webhooks(#[from] crate::interpret::BuildError),
    /// Redis holds jobs in the queue layout of a release before the engine.
    #[error(
        "Redis holds jobs in the queue layout of an earlier gcrun release ({}); this worker would never run them. \
         Let the earlier release's workers drain them first (`gcrun runs counts` shows the depths), then start this one; \
         see README, Upgrading",
        .0.iter().map(|(q, n)| format!("{q}: {n}")).collect::<Vec<_>>().join(", ")
    )]
    OldQueues(Vec<(String, u64)>),
}

/// A worker process, assembled and not yet running. (`Debug` leaves out
/// the Redis URL, which may hold a password.)
pub struct Worker {
    deps: Arc<Deps>,
    redis: gcrun_store::RedisTarget,
    metrics: Metrics,
    run: RunSettings,
    readiness: Readiness,
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

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("instance", &self.run.instance).finish_non_exhaustive()
    }
}

impl Worker {
    /// Connects to Redis (and checks it answers), builds the Genesys client,
    /// the shared limiter and the steps' dependencies.
    pub async fn build(settings: WorkerSettings) -> Result<Self, BuildError> {
        let conn = gcrun_store::connect_to(&settings.redis).await?;
        let tenant = settings.tenant.clone();
        let store = Store::for_tenant(conn.clone(), settings.store.clone(), &tenant);
        store.ping().await?;
        let queues = Queues::for_tenant(conn, &settings.queues, &tenant);
        let old = queues.old_layout_jobs().await.map_err(StoreError::from)?;
        if !old.is_empty() {
            return Err(BuildError::OldQueues(old));
        }
        queues.engine().check_server().await.map_err(StoreError::from)?;
        let marked = queues.engine().migrate().await.map_err(StoreError::from)?;
        if marked > 0 {
            tracing::info!(marked, "queues brought to this release's layout (done ids marked)");
        }
        let g = settings.genesys;
        let policy = WorkerConfig { tenant: tenant.clone(), ..settings.policy };
        let genesys = GenesysClient::new(g.environment, g.credentials, &g.client)?;
        let metrics = Metrics::for_tenant(&tenant);
        let limiter = store.limiter(settings.limiter);
        // Operators' `gcrun stats` finds the limiters in use here.
        limiter.register().await?;
        let deps = Deps::new(DepsParts {
            limiter,
            store,
            genesys,
            queues,
            metrics: metrics.clone(),
            policy,
            webhook_secret: settings.webhook_secret,
            seed: settings.jitter_seed,
        })?;
        Ok(Self {
            deps: Arc::new(deps),
            redis: settings.redis,
            metrics,
            run: settings.run,
            readiness: Readiness::default(),
        })
    }

    /// The steps' dependencies, for driving single steps (tests) or reading
    /// the store and queues the worker uses.
    pub fn deps(&self) -> &Arc<Deps> {
        &self.deps
    }

    pub fn instance(&self) -> &str {
        &self.run.instance
    }

    /// Runs until `shutdown` completes: the admin server on `admin` (when
    /// given), a worker per queue and the sweeper. Then it stops fetching,
    /// gives in-flight jobs `shutdown_timeout` to finish, and stops the
    /// admin server last, so `/readyz` says "not ready" while it drains.
    /// Jobs still running then keep their leases, which lapse; another
    /// worker runs them after that: steps are idempotent.
    pub async fn run(
        self,
        admin: Option<tokio::net::TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        // Idle workers wake when any process pushes a ready job.
        let listening = self.deps.queues().listen(gcrun_store::Subscriber::new(self.redis.clone()));
        let admin_task = admin.map(|listener| {
            let state = AdminState {
                deps: self.deps.clone(),
                metrics: self.metrics.clone(),
                readiness: self.readiness.clone(),
            };
            tokio::spawn(serve_admin(listener, state, wait_for(stop_rx.clone())))
        });
        let (workers_tx, workers_rx) = watch::channel(false);
        let sweeper = tokio::spawn(sweep_loop(self.deps.clone(), self.run.clone(), wait_for(workers_rx.clone())));
        let signal = tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutdown requested: no new jobs; waiting for in-flight jobs");
            let _ = workers_tx.send(true);
        });
        self.readiness.set(true);
        tracing::info!(instance = %self.run.instance, tenant = %self.deps.store().tenant(), "workers started");
        let engine = self.deps.queues().engine().clone();
        let q = self.deps.queues().settings.clone();
        let backend = |queue: Queue, concurrency: usize| {
            let settings = BackendSettings {
                concurrency: concurrency.max(1),
                batch: q.batch_size.max(1),
                lease: q.lease,
                max_idle: self.run.poll_interval,
                max_deliveries: q.max_deliveries,
                ..BackendSettings::default()
            };
            (engine.clone(), queue, settings)
        };
        // One supervised apalis worker per queue; they differ only in the
        // payload type and the handler.
        macro_rules! queue_worker {
            ($queue:expr, $concurrency:expr, $payload:ty, $handler:expr) => {{
                let ((engine, queue, settings), deps) = (backend($queue, $concurrency), self.deps.clone());
                supervise(queue.name(), &self.run, workers_rx.clone(), move |monitor, name| {
                    let (engine, deps) = (engine.clone(), deps.clone());
                    monitor.register(move |_| {
                        WorkerBuilder::new(name.clone())
                            .backend(EngineBackend::<$payload>::new(engine.clone(), queue, settings))
                            .data(deps.clone())
                            .concurrency(settings.concurrency)
                            // A panicking step is a bug: its job goes to the dead
                            // set with the panic as the reason, and only it.
                            .catch_panic()
                            .build($handler)
                    })
                })
            }};
        }
        tokio::join!(
            queue_worker!(Queue::Submit, self.run.submit_concurrency, SubmitJob, submit_job),
            queue_worker!(Queue::Poll, self.run.poll_concurrency, PollJob, poll_job),
            queue_worker!(Queue::Webhook, self.run.webhook_concurrency, WebhookJob, webhook_job),
        );
        self.readiness.set(false);
        signal.abort();
        listening.abort();
        let _ = sweeper.await;
        tracing::info!("workers stopped");
        let _ = stop_tx.send(true);
        if let Some(task) = admin_task {
            task.await.map_err(std::io::Error::other)??;
        }
        Ok(())
    }
}

/// Completes once the watched flag is set.
async fn wait_for(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Runs one queue's apalis worker until shutdown, restarting it after an
/// error (apalis ends a worker on any backend error, such as a Redis blip)
/// with a growing pause that an async sleep waits out: no runtime thread
/// blocks, so the admin server and the other queues go on meanwhile.
async fn supervise<F>(queue: &'static str, run: &RunSettings, stop: watch::Receiver<bool>, register: F)
where
    F: Fn(Monitor, String) -> Monitor,
{
    let mut restarts: u32 = 0;
    loop {
        let name = format!("{queue}-{}-r{restarts}", run.instance);
        let monitor = register(Monitor::new(), name)
            .on_event(|worker, event| {
                if let Event::Error(e) = event {
                    tracing::warn!(worker = %worker.name(), error = %e, "worker error");
                }
            })
            .should_restart(|_, _| false)
            .shutdown_timeout(run.shutdown_timeout);
        let started = Instant::now();
        let stopped = wait_for(stop.clone());
        let result = monitor
            .run_with_signal(async move {
                stopped.await;
                Ok(())
            })
            .await;
        if *stop.borrow() {
            return;
        }
        // A worker that ran a good while before failing starts afresh.
        if started.elapsed() > Duration::from_secs(30) {
            restarts = 0;
        }
        restarts += 1;
        let pause = Duration::from_millis((50 * u64::from(restarts)).min(2_000));
        tracing::warn!(queue, restarts, ?result, pause_ms = pause.as_millis() as u64, "worker stopped; restarting");
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = wait_for(stop.clone()) => return,
        }
    }
}

/// Housekeeping until `stop`: trims each queue's `done` set, and sweeps
/// runs that are past their deadline without having ended (a lost job
/// chain) by pushing a submit job for each: the submit step resumes
/// whatever state the run is in, and the deadline then ends it. Pushes are
/// idempotent in effect, so several workers sweeping at once do no harm.
async fn sweep_loop(deps: Arc<Deps>, settings: RunSettings, stop: impl Future<Output = ()>) {
    let mut stop = std::pin::pin!(stop);
    let mut tick = tokio::time::interval(settings.sweep_interval.max(Duration::from_millis(10)));
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => return,
        }
        ticks += 1;
        let now = now_ms();
        match deps.store().overdue(now, settings.sweep_grace.as_millis() as u64, 500).await {
            Ok(ids) => {
                for id in ids {
                    tracing::warn!(run = %id, "run is past its deadline without an end; driving it on");
                    if let Err(e) = deps.queues().push_submit(id, Duration::ZERO).await {
                        tracing::warn!(error = %e, "sweep push failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "sweep failed"),
        }
        sweep_owed_webhooks(&deps, settings.sweep_grace).await;
        // Trimming is heavier: about every 30 s whatever the sweep interval.
        let every = (30_000 / settings.sweep_interval.as_millis().max(1) as u64).max(1);
        if (ticks - 1) % every != 0 {
            continue;
        }
        let queues = deps.queues();
        for q in queues.names.all() {
            // Slice after slice while there is more, within a time budget,
            // so retention keeps up with any rate of finished jobs.
            let budget = std::time::Instant::now();
            let mut removed = 0;
            loop {
                match queues.trim(q, settings.done_retention, settings.dead_job_retention).await {
                    Ok(n) => {
                        removed += n;
                        if n < queues.settings.limits.sweep_per_call || budget.elapsed() > Duration::from_secs(2) {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(queue = q, error = %e, "retention failed");
                        break;
                    }
                }
            }
            if removed > 0 {
                tracing::debug!(queue = q, removed, "forgot finished jobs past retention");
            }
        }
        // Ended runs whose records expired leave the counts and indexes.
        let budget = std::time::Instant::now();
        loop {
            // A few seconds' grace, for the clock of the worker that
            // scored the index (the record's own expiry is Redis's).
            match deps.store().reconcile_expired(now_ms(), 5_000, 1_000).await {
                Ok(n) if n == 1_000 && budget.elapsed() < Duration::from_secs(2) => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "reconciling expired runs failed");
                    break;
                }
            }
        }
    }
}

/// Ended runs owing a webhook (pending for longer than `grace`) whose
/// delivery job is gone: dead in the queue after failing again and again,
/// or lost with Redis data. Their webhook is marked dead, so it lands in
/// the webhook dead-letter set for an operator to requeue instead of
/// staying pending forever. A run whose job is alive is seen again later.
async fn sweep_owed_webhooks(deps: &Deps, grace: Duration) {
    let store = deps.store();
    let Ok(now) = store.redis_now_ms().await else { return };
    let Ok(ids) = store.webhooks_owed_before(now.saturating_sub(grace.as_millis() as u64), 200).await else {
        return;
    };
    for id in ids {
        let Ok(rec) = store.get_run(&id).await else { continue };
        let owed =
            rec.filter(|r| r.status.is_terminal() && r.webhook.status == Some(gcrun_model::WebhookStatus::Pending));
        let Some(rec) = owed else {
            let _ = store.webhook_owed_seen(&id, false).await;
            continue;
        };
        let job = gcrun_queue::Job::Webhook {
            run: id,
            generation: rec.webhook_generation(),
            attempt: rec.webhook.attempts,
            after: Duration::ZERO,
        };
        match deps.queues().engine().is_live(&job).await {
            Ok(true) => {
                let _ = store.webhook_owed_seen(&id, true).await;
            }
            // A first attempt made inline has no job: its step's job died
            // before making it (and was not redelivered within the grace).
            // Push the job it would have resumed. An id the queue already
            // holds adds nothing: either a redelivered step job pushed it a
            // moment ago (live: seen owed), or it is dead after failing
            // again and again (dead-lettered below). A push that failed is
            // tried again at the next sweep.
            Ok(false) if rec.webhook.attempts == 0 => match deps.queues().engine().push(&[job]).await {
                Ok(1) => {
                    tracing::warn!(run = %id, "webhook owed with no delivery job: its first attempt is pushed");
                    let _ = store.webhook_owed_seen(&id, true).await;
                }
                Ok(_) if deps.queues().engine().is_live(&job).await.unwrap_or(true) => {
                    let _ = store.webhook_owed_seen(&id, true).await;
                }
                Ok(_) => dead_letter_webhook(store, &id, rec.webhook.attempts, now).await,
                Err(e) => tracing::warn!(run = %id, error = %e, "pushing an owed webhook's first attempt failed"),
            },
            Ok(false) => dead_letter_webhook(store, &id, rec.webhook.attempts, now).await,
            Err(e) => tracing::warn!(run = %id, error = %e, "checking a webhook's delivery job failed"),
        }
    }
}

/// Marks an owed webhook dead whose delivery job is gone, compare-and-set
/// on its attempt (a delivery that moved on since the record was read wins).
async fn dead_letter_webhook(store: &gcrun_store::Store, id: &gcrun_model::RunId, attempts: u32, now: u64) {
    let reason = "its delivery job was lost (dead in the queue, or lost with Redis data); requeue it with \
                  `gcrun dlq webhooks --requeue`";
    let attempt = gcrun_store::WebhookAttempt::Dead { reason: reason.into() };
    if let Ok(write) = store.prepare_webhook_attempt(id, attempts, &attempt, now) {
        if let Ok(gcrun_store::WriteOutcome::Applied) = store.apply(&write).await {
            tracing::warn!(run = %id, "webhook dead-lettered: {reason}");
        }
    }
}

#[derive(Clone)]
struct AdminState {
    deps: Arc<Deps>,
    metrics: Metrics,
    readiness: Readiness,
}

/// The admin server: `/metrics`, `/healthz`, `/readyz`.
async fn serve_admin(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(state);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// How long `/readyz` and the depth gauges of `/metrics` wait for Redis.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    let queues = s.deps.queues();
    let mut paused = 0;
    for q in queues.names.all() {
        // Without Redis the gauges keep their last values; the scrape still answers.
        if let Ok(Ok(d)) = tokio::time::timeout(PROBE_TIMEOUT, queues.depth(q)).await {
            for (state, n) in [
                ("ready", d.ready),
                ("scheduled", d.scheduled),
                ("in_flight", d.in_flight),
                ("done", d.done),
                ("dead", d.dead),
            ] {
                s.metrics
                    .queue_depth
                    .get_or_create(&crate::metrics::QueueLabels { queue: q.to_string(), state: state.into() })
                    .set(n as i64);
            }
            paused += i64::from(d.paused.is_some());
            let age = d.oldest_ready_ms.map_or(0.0, |ms| ms as f64 / 1000.0);
            s.metrics
                .queue_oldest_ready
                .get_or_create(&crate::metrics::QueueNameLabels { queue: q.to_string() })
                .set(age);
        }
    }
    if let Ok(Ok(n)) = tokio::time::timeout(PROBE_TIMEOUT, s.deps.store().dlq_len()).await {
        s.metrics.dead_letter_size.set(n as i64);
    }
    if let Ok(Ok(n)) = tokio::time::timeout(PROBE_TIMEOUT, s.deps.store().webhook_dlq_len()).await {
        s.metrics.dead_webhooks.set(n as i64);
    }
    if let Ok(Ok(holds)) = tokio::time::timeout(PROBE_TIMEOUT, s.deps.store().holds()).await {
        s.metrics.pauses.set(paused + holds.len() as i64);
    }
    if let Ok(Ok(n)) = tokio::time::timeout(PROBE_TIMEOUT, s.deps.store().parked_len()).await {
        s.metrics.parked_runs.set(n as i64);
    }
    let limiter = s.deps.limiter();
    s.metrics.limiter_slots_max.set(i64::from(limiter.config().max_concurrent));
    if let Ok(Ok(status)) = tokio::time::timeout(PROBE_TIMEOUT, limiter.status()).await {
        s.metrics.limiter_slots_held.set(status.held as i64);
        s.metrics.limiter_paused.set(status.paused_for_ms.map_or(0.0, |ms| ms as f64 / 1000.0));
    }
    ([("content-type", "text/plain; version=0.0.4; charset=utf-8")], s.metrics.encode())
}

async fn ready(State(s): State<AdminState>) -> impl IntoResponse {
    if !s.readiness.get() {
        return (StatusCode::SERVICE_UNAVAILABLE, "workers not running".to_string());
    }
    // A probe must answer promptly even while Redis is gone (the
    // connection's own retries take many seconds to give up).
    match tokio::time::timeout(PROBE_TIMEOUT, s.deps.store().ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready".to_string()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("redis unreachable: {e}")),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, format!("redis did not answer within {PROBE_TIMEOUT:?}")),
    }
}
