//! The queue engine's storage: gcrun's own queues on Redis, one Lua script
//! per operation (`lua/`, KEYS and ARGV named at the top of each), every
//! key declared, bounded work per call. It is what replaces apalis-redis
//! under the apalis runtime (see ARCHITECTURE.md): millisecond schedules,
//! promotion of due jobs in bounded slices (no backlog size can wedge a
//! queue), per-job leases instead of worker heartbeats, an acknowledgement
//! that pushes the step's successors in the same script, deterministic ids
//! that dedupe pushes for a retention window, and a dead set with reasons.
//!
//! Every time in the scripts is Redis's own (`TIME`), never a worker's
//! clock: a lease or a due time means the same to every worker whatever
//! their clocks say, and a call that waited out a reconnect cannot write a
//! lease that has already lapsed.
//!
//! Keys of queue `q` are all under the tenant's hash tag (`{gcrun}` for
//! the default tenant), the tag of its run records too, so a step's script
//! may touch the three queues and the run record in one slot; the layout
//! is written once, at the top of `lua/lib.lua`, which every script shares.
//!
//! The hot path is counted in Redis commands (inside scripts, as `INFO
//! commandstats` counts them): a push is one `HSETNX` and a share of one
//! `RPUSH`/`ZADD`; a busy fetch is a fixed handful of commands for the
//! whole batch; an ack is the script call, `TIME`, `ZREM`, `HSET` and
//! `ZADD`. An idle queue is woken by `PUBLISH` only when its ready list was
//! empty or its earliest due time moved earlier. `gcrun bench queue`
//! prints the measured figure.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use gcrun_model::Tenant;
use gcrun_redis::{Conn, Subscriber};
use redis::Script;
use tokio::sync::Notify;

use crate::job::{Job, PAYLOAD_VERSION, PollJob, SubmitJob, WebhookJob};

/// The engine's Lua, for scripts composed elsewhere (the worker's fused
/// step script holds [`LIB`](lua::LIB) and [`ACK`](lua::ACK) beside the
/// store's record writes). Every name they define starts with `q_`.
pub mod lua {
    /// Shared helpers (`q_now`, `q_push`, ...) and the key layout.
    pub const LIB: &str = include_str!("../lua/lib.lua");
    /// Defines `q_ack(KEYS, ARGV)`; see [`Engine::ack_call`](super::Engine::ack_call).
    pub const ACK: &str = include_str!("../lua/ack.lua");
}

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| Script::new(concat!(include_str!("../lua/lib.lua"), include_str!(concat!("../lua/", $file)))))
    };
    ($file:literal, $main:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(include_str!("../lua/lib.lua"), include_str!(concat!("../lua/", $file)), $main))
        })
    };
}

static PUSH: LazyLock<Script> = script!("push.lua");
static FETCH: LazyLock<Script> = script!("fetch.lua");
static ACK: LazyLock<Script> = script!("ack.lua", "\nreturn q_ack(KEYS, ARGV)\n");
static RETRY: LazyLock<Script> = script!("retry.lua");
static KILL: LazyLock<Script> = script!("kill.lua");
static RENEW: LazyLock<Script> = script!("renew.lua");
static RECOVER: LazyLock<Script> = script!("recover.lua");
static TRIM: LazyLock<Script> = script!("trim.lua");
static DEPTH: LazyLock<Script> = script!("depth.lua");
static REQUEUE: LazyLock<Script> = script!("requeue.lua");
static PURGE: LazyLock<Script> = script!("purge.lua");
static MIGRATE: LazyLock<Script> = script!("migrate.lua");

/// The engine's layout version, kept in [`Engine::layout_key`] once a
/// worker has brought Redis to it.
pub const LAYOUT: u32 = 2;

/// The three queues, in the order the scripts index them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Queue {
    Submit = 0,
    Poll = 1,
    Webhook = 2,
}

impl Queue {
    pub const ALL: [Queue; 3] = [Queue::Submit, Queue::Poll, Queue::Webhook];

    pub fn name(self) -> &'static str {
        match self {
            Queue::Submit => "submit",
            Queue::Poll => "poll",
            Queue::Webhook => "webhook",
        }
    }

    /// The queue called `name`, if any.
    pub fn named(name: &str) -> Option<Queue> {
        Queue::ALL.into_iter().find(|q| q.name() == name)
    }

    /// Key `part` of this queue of the tenant whose hash tag is `tag` (see
    /// `lua/lib.lua` for the layout).
    pub fn key(self, tag: &str, part: &str) -> String {
        format!("{tag}:q:{}:{part}", self.name())
    }
}

impl Job {
    /// The queue this job goes to.
    pub fn queue(&self) -> Queue {
        match self {
            Job::Submit { .. } => Queue::Submit,
            Job::Poll { .. } => Queue::Poll,
            Job::Webhook { .. } => Queue::Webhook,
        }
    }

    /// The id the engine stores it under: the deterministic one, or a fresh
    /// one for a submit job.
    pub fn engine_id(&self) -> String {
        self.id().unwrap_or_else(|| format!("s:{}:{}", self.run(), uuid::Uuid::new_v4().simple()))
    }

    /// The payload as stored (JSON of the job's payload type).
    pub fn payload(&self) -> String {
        let run = self.run().to_string();
        let encoded = match *self {
            Job::Submit { .. } => serde_json::to_string(&SubmitJob { v: PAYLOAD_VERSION, run }),
            Job::Poll { attempt, .. } => serde_json::to_string(&PollJob { v: PAYLOAD_VERSION, run, attempt }),
            Job::Webhook { attempt, .. } => serde_json::to_string(&WebhookJob { v: PAYLOAD_VERSION, run, attempt }),
        };
        encoded.unwrap_or_default()
    }
}

/// Limits of one engine call. Every one bounds the work a script does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineLimits {
    /// Due jobs promoted from scheduled to ready per fetch.
    pub promote_per_fetch: usize,
    /// Jobs pushed per script call (longer lists are split).
    pub push_per_call: usize,
    /// Expired leases recovered, or finished ids forgotten, per call.
    pub sweep_per_call: usize,
}

impl Default for EngineLimits {
    fn default() -> Self {
        Self { promote_per_fetch: 1_000, push_per_call: 500, sweep_per_call: 1_000 }
    }
}

/// A job's lease: which job, which fetch leased it, and how many times it
/// has been delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub queue: Queue,
    pub id: String,
    /// The fetch that leased it: names the lease, so a copy whose lease
    /// lapsed (and was leased again) cannot settle the job.
    pub token: u64,
    /// Which delivery this is, 1 for the first: what a poison job's cap
    /// counts (deliveries that failed or were lost, plus this one).
    pub delivery: u64,
}

/// A job leased to this worker, with its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    pub lease: Lease,
    pub payload: String,
}

/// What a fetch brought.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fetched {
    pub jobs: Vec<Leased>,
    /// When nothing was leased: how long until the earliest scheduled job
    /// is due, if any (how long an idle worker may wait).
    pub next_due_in: Option<Duration>,
}

/// How many jobs a queue holds in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineDepth {
    pub ready: u64,
    pub scheduled: u64,
    pub leased: u64,
    pub dead: u64,
    /// Finished ids still remembered (they dedupe pushes).
    pub done: u64,
    /// How long the oldest ready job has waited for a worker, in ms.
    pub oldest_ready_ms: Option<u64>,
}

/// A job in a queue's dead set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadEntry {
    pub id: String,
    /// When it died (unix ms, Redis's clock).
    pub died_ms: u64,
    pub payload: Option<String>,
    pub reason: Option<String>,
}

/// A script call composed by a caller: the keys and arguments of one
/// engine fragment, for a script that holds it beside others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptCall {
    pub keys: Vec<String>,
    pub args: Vec<String>,
}

/// The engine's storage, over one self-reconnecting connection. Clones
/// share the connection and the wake-ups: a push from this process wakes
/// this process's idle worker of that queue at once.
#[derive(Clone)]
pub struct Engine {
    conn: Conn,
    limits: EngineLimits,
    wake: Arc<[Notify; 3]>,
    /// The tenant's hash tag every queue key starts with.
    tag: Arc<str>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("tag", &self.tag).field("limits", &self.limits).finish_non_exhaustive()
    }
}

fn int(v: Option<redis::Value>) -> Result<i64, redis::RedisError> {
    Ok(v.map(redis::from_redis_value).transpose()?.unwrap_or_default())
}

impl Engine {
    /// The default tenant's queues (the single-org layout).
    pub fn new(conn: Conn, limits: EngineLimits) -> Self {
        Self::for_tenant(conn, limits, &Tenant::default())
    }

    /// `tenant`'s queues, under its hash tag (the tag its store uses, so a
    /// step's fused script stays in one slot).
    pub fn for_tenant(conn: Conn, limits: EngineLimits, tenant: &Tenant) -> Self {
        let wake = Arc::new([Notify::new(), Notify::new(), Notify::new()]);
        Self { conn, limits, wake, tag: tenant.tag().into() }
    }

    /// Key `part` of `queue`.
    pub fn k(&self, queue: Queue, part: &str) -> String {
        queue.key(&self.tag, part)
    }

    /// The pub/sub channel on which the scripts announce `queue`'s ready
    /// jobs.
    pub fn wake(&self, queue: Queue) -> String {
        self.k(queue, "wake")
    }

    /// The keys a push into `queue` touches, in `q_push`'s order.
    fn push_keys(&self, queue: Queue) -> [String; 3] {
        [self.k(queue, "jobs"), self.k(queue, "scheduled"), self.k(queue, "ready")]
    }

    /// Where Redis records which engine layout this tenant's queues are in.
    pub fn layout_key(&self) -> String {
        format!("{}:q:layout", self.tag)
    }

    pub(crate) fn connection(&self) -> Conn {
        self.conn.clone()
    }

    pub fn limits(&self) -> EngineLimits {
        self.limits
    }

    /// Completes when a job was pushed to `queue` from this process, or
    /// announced by any process this one listens to (a permit is kept if
    /// nobody waits, so a push between two waits counts).
    pub async fn pushed(&self, queue: Queue) {
        self.wake[queue as usize].notified().await;
    }

    /// Listens for the scripts' announcements of ready jobs (pushed by any
    /// process) on a pub/sub connection of its own, and wakes this
    /// process's idle workers of that queue. Reconnects after a Redis
    /// error; a missed announcement only costs the worker's next look.
    pub fn listen(&self, subscriber: Subscriber) -> tokio::task::JoinHandle<()> {
        let wake = self.wake.clone();
        let channels = Queue::ALL.map(|q| self.wake(q));
        tokio::spawn(async move {
            loop {
                match subscribe(&subscriber, &channels).await {
                    Ok(mut messages) => {
                        while let Some(msg) = futures_util::StreamExt::next(&mut messages).await {
                            let channel = msg.get_channel_name();
                            if let Some(q) = Queue::ALL.into_iter().find(|q| channels[*q as usize] == channel) {
                                wake[q as usize].notify_one();
                            }
                        }
                        tracing::warn!("wake-up subscription ended; subscribing again");
                    }
                    Err(e) => tracing::warn!(error = %e, "wake-up subscription failed; trying again"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    }

    fn woke(&self, queues: impl IntoIterator<Item = Queue>) {
        for q in queues {
            self.wake[q as usize].notify_one();
        }
    }

    /// Pushes jobs (each due `after` from now, by Redis's clock); returns
    /// how many were new. Ids the queue holds (pending, leased, done within
    /// retention, dead) are skipped.
    pub async fn push(&self, jobs: &[Job]) -> Result<usize, redis::RedisError> {
        let mut added = 0;
        for queue in Queue::ALL {
            let mine: Vec<&Job> = jobs.iter().filter(|j| j.queue() == queue).collect();
            for chunk in mine.chunks(self.limits.push_per_call.max(1)) {
                let mut inv = PUSH.prepare_invoke();
                for key in self.push_keys(queue) {
                    inv.key(key);
                }
                inv.arg(self.wake(queue));
                for job in chunk {
                    inv.arg(job.engine_id()).arg(job.payload()).arg(delay_ms(job.after()));
                }
                let n: usize = inv.invoke_async(&mut self.conn.clone()).await?;
                added += n;
            }
            if !mine.is_empty() {
                self.woke([queue]);
            }
        }
        Ok(added)
    }

    /// Pushes one payload as it is, unchecked (for operators' tools and
    /// tests that need a job no step would write). `Ok(false)`: the id is
    /// taken.
    pub async fn push_raw(&self, queue: Queue, id: &str, payload: &str) -> Result<bool, redis::RedisError> {
        let mut inv = PUSH.prepare_invoke();
        for key in self.push_keys(queue) {
            inv.key(key);
        }
        let n: usize =
            inv.arg(self.wake(queue)).arg(id).arg(payload).arg(0).invoke_async(&mut self.conn.clone()).await?;
        self.woke([queue]);
        Ok(n == 1)
    }

    /// Promotes due jobs (a bounded slice) and leases up to `batch` ready
    /// ones for `lease`.
    /// Pauses `queue`: no worker leases its jobs until it is resumed (jobs
    /// already leased run on, pushes and schedules go on, nothing is
    /// lost). `note` says who and why, for operators.
    pub async fn pause(&self, queue: Queue, note: &str) -> Result<(), redis::RedisError> {
        let _: () =
            redis::cmd("SET").arg(self.k(queue, "paused")).arg(note).query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Resumes `queue` and wakes its idle workers at once.
    pub async fn resume(&self, queue: Queue) -> Result<bool, redis::RedisError> {
        let mut conn = self.conn.clone();
        let (n, _): (i64, i64) = redis::pipe()
            .cmd("DEL")
            .arg(self.k(queue, "paused"))
            .cmd("PUBLISH")
            .arg(self.wake(queue))
            .arg(1)
            .query_async(&mut conn)
            .await?;
        Ok(n == 1)
    }

    /// The note of a paused queue (`None`: running).
    pub async fn paused(&self, queue: Queue) -> Result<Option<String>, redis::RedisError> {
        redis::cmd("GET").arg(self.k(queue, "paused")).query_async(&mut self.conn.clone()).await
    }

    pub async fn fetch(&self, queue: Queue, batch: usize, lease: Duration) -> Result<Fetched, redis::RedisError> {
        let reply: Vec<redis::Value> = FETCH
            .key(self.k(queue, "scheduled"))
            .key(self.k(queue, "ready"))
            .key(self.k(queue, "leases"))
            .key(self.k(queue, "jobs"))
            .key(self.k(queue, "deliveries"))
            .key(self.k(queue, "seq"))
            .key(self.k(queue, "paused"))
            .arg(self.limits.promote_per_fetch.max(1))
            .arg(batch.max(1))
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        let mut values = reply.into_iter();
        let next_due = int(values.next())?;
        let token = u64::try_from(int(values.next())?).unwrap_or(0);
        let mut jobs = Vec::new();
        while let (Some(id), Some(payload), Some(delivery)) = (values.next(), values.next(), values.next()) {
            let lease =
                Lease { queue, id: redis::from_redis_value(id)?, token, delivery: redis::from_redis_value(delivery)? };
            jobs.push(Leased { lease, payload: redis::from_redis_value(payload)? });
        }
        Ok(Fetched { jobs, next_due_in: u64::try_from(next_due).ok().map(Duration::from_millis) })
    }

    /// The keys and arguments of `q_ack` (`lua/ack.lua`) finishing `job`
    /// and pushing `successors`: for [`ack`](Self::ack), and for a script
    /// that composes the ack with other writes (the worker's step script).
    /// The caller bounds `successors` (a step has one or two).
    pub fn ack_call(&self, job: &Lease, successors: &[Job]) -> ScriptCall {
        let q = job.queue;
        let mut keys = vec![self.k(q, "leases"), self.k(q, "jobs"), self.k(q, "done")];
        for target in Queue::ALL {
            keys.extend(self.push_keys(target));
        }
        let mut args = vec![job.id.clone(), job.token.to_string()];
        args.extend(Queue::ALL.map(|q| self.wake(q)));
        for s in successors {
            args.extend([(s.queue() as u8).to_string(), s.engine_id(), s.payload(), delay_ms(s.after()).to_string()]);
        }
        ScriptCall { keys, args }
    }

    /// The keys and arguments of `q_push` for one `job`, for a script that
    /// pushes it beside other writes (the producer's create-and-push):
    /// keys `jobs`, `scheduled`, `ready` of its queue; args the wake channel,
    /// id, payload and delay in ms.
    pub fn push_call(&self, job: &Job) -> ScriptCall {
        let q = job.queue();
        ScriptCall {
            keys: self.push_keys(q).to_vec(),
            args: vec![self.wake(q), job.engine_id(), job.payload(), delay_ms(job.after()).to_string()],
        }
    }

    /// Tells this process's idle workers that `successors` were pushed by a
    /// composed script (the scripts announce them to other processes).
    pub fn announce(&self, successors: &[Job]) {
        self.woke(successors.iter().map(Job::queue));
    }

    /// Finishes `job` and pushes its successors in the same script.
    /// `Ok(false)`: this copy's lease had lapsed and the job was leased
    /// again; the successors were still pushed (their ids dedupe), the job
    /// is left to the copy that holds it.
    pub async fn ack(&self, job: &Lease, successors: &[Job]) -> Result<bool, redis::RedisError> {
        let call = self.ack_call(job, successors);
        let mut inv = ACK.prepare_invoke();
        for key in call.keys {
            inv.key(key);
        }
        for arg in call.args {
            inv.arg(arg);
        }
        let n: i64 = inv.invoke_async(&mut self.conn.clone()).await?;
        self.announce(successors);
        Ok(n == 1)
    }

    /// Gives `job` back, due again after `after` (the step hit an
    /// infrastructure error). `Ok(false)`: the lease was not this copy's.
    pub async fn retry(&self, job: &Lease, after: Duration) -> Result<bool, redis::RedisError> {
        self.give_back(job, after, false).await
    }

    /// Gives back a job that did not run at all (at shutdown, or a payload
    /// of a newer release): its delivery does not count towards the
    /// poison-job cap.
    pub async fn release(&self, job: &Lease, after: Duration) -> Result<bool, redis::RedisError> {
        self.give_back(job, after, true).await
    }

    async fn give_back(&self, job: &Lease, after: Duration, unrun: bool) -> Result<bool, redis::RedisError> {
        let q = job.queue;
        let n: i64 = RETRY
            .key(self.k(q, "leases"))
            .key(self.k(q, "deliveries"))
            .key(self.k(q, "scheduled"))
            .arg(&job.id)
            .arg(job.token)
            .arg(delay_ms(after))
            .arg(if unrun { "1" } else { "0" })
            .arg(self.wake(q))
            .invoke_async(&mut self.conn.clone())
            .await?;
        if after.is_zero() {
            self.woke([q]);
        }
        Ok(n == 1)
    }

    /// Ends `job` in the dead set with `reason`.
    pub async fn kill(&self, job: &Lease, reason: &str) -> Result<bool, redis::RedisError> {
        let q = job.queue;
        let n: i64 = KILL
            .key(self.k(q, "leases"))
            .key(self.k(q, "deliveries"))
            .key(self.k(q, "dead"))
            .key(self.k(q, "reasons"))
            .arg(&job.id)
            .arg(job.token)
            .arg(reason)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(n == 1)
    }

    /// Extends `job`'s lease to `lease` from now, if this copy holds it.
    pub async fn renew(&self, job: &Lease, lease: Duration) -> Result<bool, redis::RedisError> {
        let q = job.queue;
        let n: i64 = RENEW
            .key(self.k(q, "leases"))
            .arg(&job.id)
            .arg(job.token)
            .arg(lease.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(n == 1)
    }

    /// Returns jobs whose lease expired to ready (a bounded slice); how many.
    pub async fn recover(&self, queue: Queue) -> Result<usize, redis::RedisError> {
        RECOVER
            .key(self.k(queue, "leases"))
            .key(self.k(queue, "ready"))
            .key(self.k(queue, "deliveries"))
            .arg(self.limits.sweep_per_call.max(1))
            .arg(self.wake(queue))
            .invoke_async(&mut self.conn.clone())
            .await
    }

    /// Forgets finished ids, and dead jobs, older than their retention (a
    /// bounded slice of each); how many.
    pub async fn trim(
        &self,
        queue: Queue,
        done_retention: Duration,
        dead_retention: Duration,
    ) -> Result<usize, redis::RedisError> {
        let mut forgotten = 0;
        for (set, keep) in [("done", done_retention), ("dead", dead_retention)] {
            let n: usize = TRIM
                .key(self.k(queue, set))
                .key(self.k(queue, "jobs"))
                .key(self.k(queue, "reasons"))
                .key(self.k(queue, "deliveries"))
                .arg(keep.as_millis() as u64)
                .arg(self.limits.sweep_per_call.max(1))
                .invoke_async(&mut self.conn.clone())
                .await?;
            forgotten += n;
        }
        Ok(forgotten)
    }

    /// Brings the queues to this release's layout, once: done ids of the
    /// first engine layout get the marker pushes now check (bounded slices).
    /// Entries of that layout still in ready or leased are read as they are.
    /// Returns how many done ids were marked.
    pub async fn migrate(&self) -> Result<usize, redis::RedisError> {
        let mut conn = self.conn.clone();
        let layout: Option<u32> = redis::cmd("GET").arg(self.layout_key()).query_async(&mut conn).await?;
        if layout >= Some(LAYOUT) {
            return Ok(0);
        }
        let slice = self.limits.sweep_per_call.max(1);
        let mut marked = 0;
        for queue in Queue::ALL {
            let mut offset = 0;
            loop {
                let n: usize = MIGRATE
                    .key(self.k(queue, "done"))
                    .key(self.k(queue, "jobs"))
                    .arg(offset)
                    .arg(slice)
                    .invoke_async(&mut conn)
                    .await?;
                marked += n;
                offset += n;
                if n < slice {
                    break;
                }
            }
        }
        let _: () = redis::cmd("SET").arg(self.layout_key()).arg(LAYOUT).query_async(&mut conn).await?;
        Ok(marked)
    }

    /// The Redis server's version, refused when older than the engine needs
    /// (6.2: `LPOP` with a count). `Ok(version)` otherwise.
    pub async fn check_server(&self) -> Result<String, redis::RedisError> {
        // A Cluster answers with one INFO per node, by node address: every
        // node must be new enough.
        let answer: redis::Value = redis::cmd("INFO").arg("server").query_async(&mut self.conn.clone()).await?;
        let infos: Vec<String> = match answer {
            redis::Value::Map(per_node) => {
                per_node.into_iter().map(|(_, info)| redis::from_redis_value(info)).collect::<Result<_, _>>()?
            }
            one => vec![redis::from_redis_value(one)?],
        };
        let mut oldest = String::new();
        for info in infos {
            let version = info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("").trim().to_string();
            let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
            if parts.len() >= 2 && (parts[0], parts[1]) < (6, 2) {
                let msg = "gcrun needs Redis 6.2 or newer (LPOP with a count); this server is";
                return Err(redis::RedisError::from((redis::ErrorKind::Client, msg, version)));
            }
            oldest = version;
        }
        Ok(oldest)
    }

    /// Whether a job with `job`'s id waits, is scheduled or runs (not done,
    /// not dead, not unknown): a sweeper that finds a run owing a step asks
    /// this before calling the step's chain lost.
    pub async fn is_live(&self, job: &Job) -> Result<bool, redis::RedisError> {
        let queue = job.queue();
        let id = job.engine_id();
        let (payload, dead): (Option<String>, Option<f64>) = redis::pipe()
            .cmd("HGET")
            .arg(self.k(queue, "jobs"))
            .arg(&id)
            .cmd("ZSCORE")
            .arg(self.k(queue, "dead"))
            .arg(&id)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(payload.is_some_and(|p| !p.is_empty()) && dead.is_none())
    }

    /// How many jobs `queue` holds in each state, and the oldest ready
    /// job's age.
    pub async fn depth(&self, queue: Queue) -> Result<EngineDepth, redis::RedisError> {
        let (ready, scheduled, leased, dead, done, age): (u64, u64, u64, u64, u64, i64) = DEPTH
            .key(self.k(queue, "ready"))
            .key(self.k(queue, "scheduled"))
            .key(self.k(queue, "leases"))
            .key(self.k(queue, "dead"))
            .key(self.k(queue, "done"))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(EngineDepth { ready, scheduled, leased, dead, done, oldest_ready_ms: u64::try_from(age).ok() })
    }

    /// A page of the dead set, oldest first: `offset` entries skipped, at
    /// most `limit` returned (index-backed: the cost is the page's, never
    /// the set's).
    pub async fn dead(&self, queue: Queue, offset: usize, limit: usize) -> Result<Vec<DeadEntry>, redis::RedisError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let page: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(self.k(queue, "dead"))
            .arg(offset)
            .arg(offset + limit - 1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        if page.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = page.iter().map(|(id, _)| id.as_str()).collect();
        let (payloads, reasons): (Vec<Option<String>>, Vec<Option<String>>) = redis::pipe()
            .cmd("HMGET")
            .arg(self.k(queue, "jobs"))
            .arg(&ids)
            .cmd("HMGET")
            .arg(self.k(queue, "reasons"))
            .arg(&ids)
            .query_async(&mut conn)
            .await?;
        Ok(page
            .iter()
            .zip(payloads.into_iter().zip(reasons))
            .map(|((id, died), (payload, reason))| DeadEntry {
                id: id.clone(),
                died_ms: *died as u64,
                payload: payload.filter(|p| !p.is_empty()),
                reason,
            })
            .collect())
    }

    /// Runs each listed dead job again under a fresh id, ready now; ids no
    /// longer dead are skipped (checked in the script, not when listed).
    /// Returns how many were requeued.
    pub async fn requeue_dead(&self, queue: Queue, ids: &[String]) -> Result<usize, redis::RedisError> {
        let mut requeued = 0;
        for chunk in ids.chunks(self.limits.push_per_call.max(1)) {
            let mut inv = REQUEUE.prepare_invoke();
            for part in ["dead", "reasons", "jobs", "done", "deliveries", "scheduled", "ready"] {
                inv.key(self.k(queue, part));
            }
            inv.arg(self.wake(queue));
            for id in chunk {
                inv.arg(id).arg(requeued_id(id));
            }
            let n: usize = inv.invoke_async(&mut self.conn.clone()).await?;
            requeued += n;
        }
        if requeued > 0 {
            self.woke([queue]);
        }
        Ok(requeued)
    }

    /// Drops each listed dead job; ids no longer dead are skipped (checked
    /// in the script, so a purge racing a requeue never drops a live job).
    /// Returns how many were purged.
    pub async fn purge_dead(&self, queue: Queue, ids: &[String]) -> Result<usize, redis::RedisError> {
        let mut purged = 0;
        for chunk in ids.chunks(self.limits.push_per_call.max(1)) {
            let mut inv = PURGE.prepare_invoke();
            for part in ["dead", "reasons", "jobs", "done", "deliveries"] {
                inv.key(self.k(queue, part));
            }
            for id in chunk {
                inv.arg(id);
            }
            let n: usize = inv.invoke_async(&mut self.conn.clone()).await?;
            purged += n;
        }
        Ok(purged)
    }
}

/// A requeued job's fresh id: the old one with a requeue suffix (so it
/// still names its run), replacing any earlier suffix.
fn requeued_id(old: &str) -> String {
    let base = old.split_once("~r").map_or(old, |(base, _)| base);
    format!("{base}~r{}", uuid::Uuid::new_v4().simple())
}

async fn subscribe(
    subscriber: &Subscriber,
    channels: &[String; 3],
) -> Result<redis::aio::PubSubStream, gcrun_redis::ConnectError> {
    let mut pubsub = subscriber.pubsub().await?;
    for channel in channels {
        pubsub.subscribe(channel).await?;
    }
    Ok(pubsub.into_on_message())
}

/// A job's delay in ms (capped, so an absurd server-requested wait cannot
/// overflow a clock). The scripts add it to Redis's own time.
fn delay_ms(after: Duration) -> u64 {
    after.min(crate::queues::MAX_DELAY).as_millis() as u64
}
