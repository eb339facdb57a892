//! [`EngineBackend`]: an apalis-core backend over the [`Engine`], so the
//! apalis runtime (Monitor, WorkerBuilder, concurrency, graceful shutdown)
//! runs gcrun's workers on gcrun's own queues. See
//! `docs/design/queue-engine.md` for the contract as the apalis source has
//! it. What this backend guarantees:
//! - **It never ends the stream.** Its error type is `Infallible`: a Redis
//!   error is logged and becomes a short backoff, never a dead worker.
//! - **Bad payloads are dead-lettered at fetch**, with the decode error as
//!   the reason, never handed to apalis as an error that would stop the
//!   worker and loop on the same job after every restart.
//! - **Leases, not heartbeats.** Each job is leased for `lease`; the ack
//!   layer renews it while the handler runs; a worker that dies leaves
//!   leases that lapse and are recovered by whichever worker fetches next.
//! - **Results are acted on by the layer** ([`AckLayer`]): done → ack; a
//!   top-level `AbortError` → dead set with its reason; another error →
//!   back to the queue after a backoff, dead after `max_deliveries`.
//! - **It fetches only what it can run**: at most the worker's free slots,
//!   so no leased job waits in a buffer while its lease runs; and, while
//!   jobs run, not before a quarter of the batch is free, so a busy worker
//!   fetches in batches (one fetch's fixed cost shared by many jobs)
//!   rather than one job per finished job.
//! - **A handler may settle its own job** in a script of its own (the
//!   worker's step script writes the run record, pushes the successors and
//!   acks in one call): it takes the [`JobHandle`] from the task's data and
//!   marks it settled, and the layer then leaves the job alone.
//! - **An idle worker sleeps until the next due job, a push announced by
//!   any process (pub/sub, see [`Engine::listen`]), or `max_idle`**, the
//!   bound for an announcement that was lost.
//! - **A Redis error is a backoff inside the backend** (50 ms doubling to
//!   2 s), never an error that would end the worker's stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use apalis_core::backend::finalize::Ephemeral;
use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::error::{AbortError, BoxDynError};
use apalis_core::layers::{Layer, Service};
use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use apalis_core::worker::context::WorkerContext;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::de::DeserializeOwned;

use crate::engine::{Engine, Fetched, Lease, Queue};
use crate::job::{PAYLOAD_VERSION, PayloadVersion};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Longest a busy worker waits for a quarter batch of free slots before it
/// fetches for the slots it has.
const HOLD: Duration = Duration::from_millis(5);

/// A running job's lease, in the task's data (`Data<JobHandle>` in a
/// handler): lets the handler settle the job itself, in a script that also
/// does the step's own writes, and tell the ack layer it did.
#[derive(Debug, Clone)]
pub struct JobHandle {
    lease: Lease,
    settled: Arc<AtomicBool>,
}

impl JobHandle {
    /// The backend makes one per task; another driver of the engine may too.
    pub fn new(lease: Lease) -> Self {
        Self { lease, settled: Arc::new(AtomicBool::new(false)) }
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The handler settled the job (acked it, whatever the script said of
    /// the lease): the layer must not settle it again.
    pub fn mark_settled(&self) {
        self.settled.store(true, Ordering::Release);
    }

    pub fn is_settled(&self) -> bool {
        self.settled.load(Ordering::Acquire)
    }
}

/// How one queue's worker fetches and settles jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendSettings {
    /// Jobs run at once (the worker's concurrency): a fetch never leases more.
    pub concurrency: usize,
    /// Most jobs leased per fetch.
    pub batch: usize,
    /// How long a job is leased; renewed every third of it while it runs.
    pub lease: Duration,
    /// Longest an idle worker waits before it looks again.
    pub max_idle: Duration,
    /// A job leased this many times without an end goes to the dead set
    /// (it keeps killing or hanging its worker).
    pub max_deliveries: u64,
    /// Backoff after a handler's infrastructure error: `base × delivery`.
    pub retry_base: Duration,
}

impl Default for BackendSettings {
    fn default() -> Self {
        Self {
            concurrency: 16,
            batch: 32,
            lease: Duration::from_secs(30),
            max_idle: Duration::from_millis(50),
            max_deliveries: 25,
            retry_base: Duration::from_millis(500),
        }
    }
}

/// One queue as an apalis backend, emitting `Task<T>`.
pub struct EngineBackend<T> {
    engine: Engine,
    queue: Queue,
    settings: BackendSettings,
    buffer: VecDeque<Task<T>>,
    fetch: Option<BoxFuture<Result<Fetched, redis::RedisError>>>,
    idle: Option<BoxFuture<()>>,
    /// Waiting (briefly) for a quarter batch of free slots before fetching.
    hold: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Consecutive fetch errors (the backoff grows with them).
    errors: u32,
    side: FuturesUnordered<BoxFuture<()>>,
    last_recover: Option<Instant>,
    _payload: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for EngineBackend<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBackend").field("queue", &self.queue).field("settings", &self.settings).finish()
    }
}

impl<T> EngineBackend<T> {
    pub fn new(engine: Engine, queue: Queue, settings: BackendSettings) -> Self {
        Self {
            engine,
            queue,
            settings,
            buffer: VecDeque::new(),
            fetch: None,
            idle: None,
            hold: None,
            errors: 0,
            side: FuturesUnordered::new(),
            last_recover: None,
            _payload: PhantomData,
        }
    }

    /// Starts a fetch of at most `want` jobs (recovering expired leases
    /// first, at most every half lease).
    fn start_fetch(&mut self, want: usize) {
        let recover = self.last_recover.is_none_or(|t| t.elapsed() >= self.settings.lease / 2);
        if recover {
            self.last_recover = Some(Instant::now());
        }
        let (engine, queue, lease) = (self.engine.clone(), self.queue, self.settings.lease);
        self.fetch = Some(Box::pin(async move {
            if recover {
                let n = engine.recover(queue).await?;
                if n > 0 {
                    tracing::warn!(queue = queue.name(), recovered = n, "jobs whose lease lapsed are ready again");
                }
            }
            engine.fetch(queue, want, lease).await
        }));
    }

    /// Waits until `after`, or until a job is pushed to this queue here.
    fn sleep(&mut self, after: Duration) {
        let engine = self.engine.clone();
        let queue = self.queue;
        self.idle = Some(Box::pin(async move {
            tokio::select! {
                () = tokio::time::sleep(after) => {}
                () = engine.pushed(queue) => {}
            }
        }));
    }
}

impl<T: DeserializeOwned + Send + 'static> EngineBackend<T> {
    /// Turns fetched jobs into tasks; a payload that does not decode, or a
    /// job leased too often, goes to the dead set instead.
    fn accept(&mut self, fetched: Fetched) {
        for job in fetched.jobs {
            let lease = job.lease;
            // A payload from a newer release: leave it to a newer worker
            // (a rolling deploy), never dead-letter it.
            let version = serde_json::from_str::<PayloadVersion>(&job.payload).map_or(0, |p| p.v);
            if version > PAYLOAD_VERSION {
                tracing::warn!(queue = self.queue.name(), id = %lease.id, version, "payload from a newer release; given back");
                let engine = self.engine.clone();
                self.side.push(Box::pin(async move {
                    let _ = engine.release(&lease, Duration::from_secs(1)).await;
                }));
                continue;
            }
            let verdict = if lease.delivery > self.settings.max_deliveries {
                Err(format!("gave up after {} deliveries without an end", lease.delivery - 1))
            } else {
                serde_json::from_str::<T>(&job.payload)
                    .map_err(|e| format!("malformed job: the payload does not decode: {e}"))
            };
            match verdict {
                Ok(args) => {
                    let task = TaskBuilder::new(args)
                        .task_id(TaskId::from_string(lease.id.clone()))
                        .attempt(usize::try_from(lease.delivery.saturating_sub(1)).unwrap_or(usize::MAX))
                        .data(JobHandle::new(lease))
                        .build();
                    self.buffer.push_back(task);
                }
                Err(reason) => {
                    tracing::warn!(queue = self.queue.name(), id = %lease.id, %reason, "job dead-lettered");
                    let engine = self.engine.clone();
                    self.side.push(Box::pin(async move {
                        if let Err(e) = engine.kill(&lease, &reason).await {
                            tracing::warn!(error = %e, "could not dead-letter a job; its lease will lapse");
                        }
                    }));
                }
            }
        }
    }
}

impl<T: DeserializeOwned + Send + 'static> Backend for EngineBackend<T> {
    type Task = Task<T>;
    type Error = Infallible;

    fn poll_ready(&mut self, cx: &mut Context<'_>, _worker: &WorkerContext) -> Poll<Result<(), Infallible>> {
        while let Poll::Ready(Some(())) = self.side.poll_next_unpin(cx) {}
        Poll::Ready(Ok(()))
    }

    fn poll_next(&mut self, cx: &mut Context<'_>, worker: &WorkerContext) -> Poll<Option<Result<Task<T>, Infallible>>> {
        loop {
            if let Some(task) = self.buffer.pop_front() {
                return Poll::Ready(Some(Ok(task)));
            }
            if let Some(fetch) = self.fetch.as_mut() {
                let result = match fetch.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => result,
                };
                self.fetch = None;
                match result {
                    Ok(fetched) => {
                        self.errors = 0;
                        let next_due = fetched.next_due_in;
                        let got = !fetched.jobs.is_empty();
                        self.accept(fetched);
                        if !got {
                            self.sleep(next_due.unwrap_or(self.settings.max_idle).min(self.settings.max_idle));
                        }
                    }
                    Err(e) => {
                        // 50 ms, doubling to 2 s while Redis keeps failing.
                        let backoff = Duration::from_millis(50 << self.errors.min(5)).min(Duration::from_secs(2));
                        self.errors = self.errors.saturating_add(1);
                        tracing::warn!(queue = self.queue.name(), error = %e, ?backoff, "fetch failed; trying again");
                        self.sleep(backoff);
                    }
                }
                continue;
            }
            if let Some(idle) = self.idle.as_mut() {
                if idle.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.idle = None;
            }
            let running = worker.task_count();
            let free = self.settings.concurrency.saturating_sub(running).max(1);
            let want = free.min(self.settings.batch.max(1));
            // While jobs run, wait a moment for a quarter batch of free
            // slots (a finishing job wakes this loop, which looks again), so
            // one fetch's fixed cost is shared; never longer than HOLD, so
            // slots held by slow jobs cannot keep the rest idle.
            let floor = (self.settings.concurrency.min(self.settings.batch) / 4).max(1);
            if running > 0 && want < floor {
                let hold = self.hold.get_or_insert_with(|| Box::pin(tokio::time::sleep(HOLD)));
                if hold.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            self.hold = None;
            self.start_fetch(want);
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>, _worker: &WorkerContext) -> Poll<Result<(), Infallible>> {
        // A fetch under way may have leased jobs: wait for it, then give
        // back everything not started, so nothing waits for a lease to lapse.
        if let Some(fetch) = self.fetch.as_mut() {
            let Poll::Ready(result) = fetch.as_mut().poll(cx) else { return Poll::Pending };
            self.fetch = None;
            if let Ok(fetched) = result {
                self.accept(fetched);
            }
        }
        while let Some(task) = self.buffer.pop_front() {
            if let Some(lease) = task.ctx().data().get::<JobHandle>().map(|h| h.lease.clone()) {
                let engine = self.engine.clone();
                self.side.push(Box::pin(async move {
                    let _ = engine.release(&lease, Duration::ZERO).await;
                }));
            }
        }
        loop {
            match self.side.poll_next_unpin(cx) {
                Poll::Ready(Some(())) => continue,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<T> BackendConfig for EngineBackend<T> {
    type Args = T;
    type Id = String;
    type Kind = Ephemeral;
    type Config = BackendSettings;
    type Layer = AckLayer;

    fn config(&self) -> &BackendSettings {
        &self.settings
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> AckLayer {
        AckLayer { engine: self.engine.clone(), settings: self.settings }
    }
}

/// Settles each job from its handler's result (see the module docs).
#[derive(Debug, Clone)]
pub struct AckLayer {
    engine: Engine,
    settings: BackendSettings,
}

impl<S> Layer<S> for AckLayer {
    type Service = AckService<S>;

    fn layer(&self, inner: S) -> AckService<S> {
        AckService { inner, engine: self.engine.clone(), settings: self.settings }
    }
}

/// The service [`AckLayer`] wraps around the handler.
#[derive(Debug, Clone)]
pub struct AckService<S> {
    inner: S,
    engine: Engine,
    settings: BackendSettings,
}

impl<S, Args> Service<Task<Args>> for AckService<S>
where
    S: Service<Task<Args>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxDynError> + Send,
    S::Response: Send + 'static,
    Args: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxDynError;
    type Future = BoxFuture<Result<S::Response, BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxDynError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<Args>) -> Self::Future {
        let handle = task.ctx().data().get::<JobHandle>().cloned();
        let fut = self.inner.call(task);
        let (engine, settings) = (self.engine.clone(), self.settings);
        Box::pin(async move {
            let Some(handle) = handle else { return fut.await.map_err(Into::into) };
            let lease = handle.lease.clone();
            // Should this future be dropped before the job is settled (the
            // shutdown timeout ran out), give the job back at once rather
            // than leave its lease to lapse.
            let mut unsettled = GiveBackOnDrop { engine: engine.clone(), lease: Some(lease.clone()) };
            let mut fut = std::pin::pin!(fut);
            let every = (settings.lease / 3).max(Duration::from_millis(10));
            let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            let result = loop {
                tokio::select! {
                    result = &mut fut => break result.map_err(Into::into),
                    _ = renew.tick() => {
                        // Renewed beside the handler, never in its way: a slow
                        // Redis answer must not hold the step up.
                        let (engine, lease, handle) = (engine.clone(), lease.clone(), handle.clone());
                        tokio::spawn(async move {
                            match engine.renew(&lease, settings.lease).await {
                                Ok(true) => {}
                                // Settled meanwhile by the step script: no lease to renew.
                                Ok(false) if handle.is_settled() => {}
                                Ok(false) => tracing::warn!(id = %lease.id, "lease lost while the job ran; another worker may run it too"),
                                Err(e) => tracing::warn!(id = %lease.id, error = %e, "renewing a lease failed"),
                            }
                        });
                    }
                }
            };
            unsettled.lease = None;
            if handle.is_settled() {
                return result;
            }
            let settlement = Settlement::of(&settings, &lease, result.as_ref().err());
            settle(&engine, &lease, settlement).await;
            result
        })
    }
}

/// Gives a job back when dropped while still armed (see `AckService::call`).
struct GiveBackOnDrop {
    engine: Engine,
    lease: Option<Lease>,
}

impl Drop for GiveBackOnDrop {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let engine = self.engine.clone();
            runtime.spawn(async move {
                match engine.retry(&lease, Duration::ZERO).await {
                    Ok(_) => tracing::info!(id = %lease.id, "job interrupted by shutdown; given back"),
                    Err(e) => tracing::warn!(id = %lease.id, error = %e, "could not give back an interrupted job; its lease will lapse"),
                }
            });
        }
    }
}

/// What becomes of a job once its handler returned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Settlement {
    Ack,
    Kill(String),
    Retry(Duration),
}

impl Settlement {
    fn of(settings: &BackendSettings, lease: &Lease, error: Option<&BoxDynError>) -> Self {
        match error {
            None => Settlement::Ack,
            Some(e) if e.downcast_ref::<AbortError>().is_some() => Settlement::Kill(e.to_string()),
            Some(e) if lease.delivery >= settings.max_deliveries => {
                Settlement::Kill(format!("gave up after {} deliveries; last error: {e}", lease.delivery))
            }
            Some(_) => {
                let after = settings.retry_base.saturating_mul(u32::try_from(lease.delivery).unwrap_or(u32::MAX));
                Settlement::Retry(after.min(Duration::from_secs(60)))
            }
        }
    }
}

/// Acts on a settlement. A Redis error while settling is retried a few
/// times; after that the lease lapses and the job runs again, which steps
/// are built to survive.
async fn settle(engine: &Engine, lease: &Lease, settlement: Settlement) {
    for attempt in 0..3u32 {
        let done = match &settlement {
            Settlement::Ack => engine.ack(lease, &[]).await,
            Settlement::Kill(reason) => engine.kill(lease, reason).await,
            Settlement::Retry(after) => engine.retry(lease, *after).await,
        };
        match done {
            Ok(true) => return,
            Ok(false) => {
                tracing::warn!(id = %lease.id, "lease lost before the job was settled; another worker has it");
                return;
            }
            Err(e) => {
                tracing::warn!(id = %lease.id, error = %e, attempt, "settling a job failed; trying again");
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt + 1))).await;
            }
        }
    }
}
