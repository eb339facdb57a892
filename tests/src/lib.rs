//! Helpers for gcrun's end-to-end suites: a whole stack on this machine.
//!
//! [`Stack`] is a private Redis, the emulator, a signature-checking webhook
//! sink, the store, the queues and a producer. Workers run in this process
//! ([`Stack::start_worker`]) or as real `gcrun worker` processes
//! ([`Stack::spawn_worker_process`]), so a crash test can kill one.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_debug_implementations)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gcrun_emulator::{EmulatorConfig, Faults};
use gcrun_genesys::{ClientConfig, Credentials, Environment};
use gcrun_harness::wait_until;
use gcrun_harness::{
    EmulatorHandle, RedisCluster, RedisSentinels, RedisServer, SinkLog, SinkRules, WebhookSink, spawn_emulator,
};
use gcrun_model::{RetrySchedule, RunId, RunStatus};
use gcrun_producer::{Producer, ProducerConfig};
use gcrun_queue::{QueueSettings, Queues};
use gcrun_store::{LimiterConfig, Store, StoreConfig};
use gcrun_worker::webhook::WebhookSecret;
use gcrun_worker::{Deps, GenesysSettings, RunSettings, Worker, WorkerConfig, WorkerSettings};
use serde_json::json;

pub use gcrun_emulator::fixtures::demo::{CALLBACK, CLIENT_ID, CLIENT_SECRET, LOOKUP, ORDER_FLOW};
/// The webhook secret every test worker signs with.
pub const HOOK_SECRET: &str = "whsec_Z2NydW4tdGVzdC13ZWJob29rLXNlY3JldC0zMmJ5dGVz";

/// The Redis a stack runs on: one server (what most suites use, and the
/// only kind they may kill and restart), a Cluster, or a primary and
/// replica under Sentinel.
pub enum Redis {
    Single(RedisServer),
    Cluster(RedisCluster),
    Sentinel(RedisSentinels),
}

impl Redis {
    /// The `REDIS_URL` that reaches it.
    pub fn url(&self) -> String {
        match self {
            Self::Single(r) => r.url(),
            Self::Cluster(c) => c.url(),
            Self::Sentinel(s) => s.url(),
        }
    }

    fn single(&mut self) -> &mut RedisServer {
        match self {
            Self::Single(r) => r,
            _ => panic!("only a one-server stack's Redis is killed and restarted this way"),
        }
    }

    /// What a suite runs on: one server, or with `GCRUN_TEST_REDIS=cluster`
    /// a three-primary Cluster for every suite that needs nothing of one
    /// server (no kill and restart, no AOF, password or TLS).
    pub fn for_suites(options: gcrun_harness::RedisOptions) -> Self {
        let plain = !options.appendonly && !options.tls && options.password.is_none();
        if plain && std::env::var("GCRUN_TEST_REDIS").is_ok_and(|v| v == "cluster") {
            Self::Cluster(RedisCluster::start(3))
        } else {
            Self::Single(RedisServer::start_with(options))
        }
    }

    /// SIGKILLs the one server.
    pub fn kill(&mut self) {
        self.single().kill();
    }

    /// Starts the one server again on its port and directory.
    pub fn restart(&mut self) {
        self.single().restart();
    }

    pub fn port(&mut self) -> u16 {
        self.single().port()
    }
}

/// `INFO <section>` of every server behind the stack's connection: one
/// text for one server, one per node for a Cluster (which answers by node).
pub async fn info(stack: &Stack, section: &str) -> Vec<String> {
    let v: redis::Value = redis::cmd("INFO").arg(section).query_async(&mut stack.store.connection()).await.unwrap();
    match v {
        redis::Value::Map(per_node) => per_node.into_iter().map(|(_, v)| redis::from_redis_value(v).unwrap()).collect(),
        one => vec![redis::from_redis_value(one).unwrap()],
    }
}

/// A numeric `INFO` field summed over every server.
pub async fn info_sum(stack: &Stack, section: &str, field: &str) -> u64 {
    let prefix = format!("{field}:");
    info(stack, section)
        .await
        .iter()
        .filter_map(|text| text.lines().find_map(|l| l.strip_prefix(prefix.as_str()))?.trim().parse::<u64>().ok())
        .sum()
}

/// A whole gcrun stack.
pub struct Stack {
    pub redis: Redis,
    pub emu: EmulatorHandle,
    pub store: Store,
    pub queues: Queues,
    pub producer: Producer,
    pub hook_url: String,
    pub sink: Arc<Mutex<SinkLog>>,
    pub queue_settings: QueueSettings,
    _sink: WebhookSink,
}

/// An in-process worker; stopped (gracefully) with [`WorkerHandle::stop`].
pub struct WorkerHandle {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    pub deps: Arc<Deps>,
}

impl WorkerHandle {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Fast schedules so suites finish in seconds, not minutes.
pub fn fast_worker_config(hook_url: &str) -> WorkerConfig {
    WorkerConfig {
        poll_schedule: RetrySchedule {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(1),
            floor: Duration::from_millis(100),
        },
        submit_schedule: RetrySchedule {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(2),
            floor: Duration::from_millis(100),
        },
        webhook_schedule: RetrySchedule {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(1),
            floor: Duration::from_millis(100),
        },
        max_submit_attempts: 50,
        default_webhook_url: Some(hook_url.parse().unwrap()),
        // The test receivers listen on loopback, and requests name them.
        limits: gcrun_model::RequestLimits { webhook_private_addresses: true, ..Default::default() },
        // A waiting run's safety net, short so suites drain quickly.
        slot_wait: Duration::from_secs(2),
        // The test receivers listen on loopback.
        webhook_egress: gcrun_worker::egress::Egress::PrivateAllowed,
        // As the stack's queue lease: a dead worker's claims lapse quickly.
        submit_claim: Duration::from_secs(3),
        submit_call: Duration::from_secs(3),
        ..WorkerConfig::default()
    }
}

pub fn limiter(rate: u32, burst: u32, max: u32) -> LimiterConfig {
    LimiterConfig {
        name: CLIENT_ID.into(),
        rate_per_minute: rate,
        burst,
        max_concurrent: max,
        lease_ttl: Duration::from_secs(60),
        window: Duration::from_secs(60),
    }
}

impl Stack {
    pub async fn start(emulator: EmulatorConfig, deadline: Duration) -> Self {
        Self::start_with(emulator, deadline, gcrun_harness::RedisOptions::default()).await
    }

    pub async fn start_with(
        emulator: EmulatorConfig,
        deadline: Duration,
        redis_options: gcrun_harness::RedisOptions,
    ) -> Self {
        Self::start_on(emulator, deadline, Redis::for_suites(redis_options)).await
    }

    /// A stack on `redis`, whatever its topology.
    pub async fn start_on(emulator: EmulatorConfig, deadline: Duration, redis: Redis) -> Self {
        let emu = spawn_emulator(emulator).await;
        let conn = gcrun_store::connect(&redis.url()).await.unwrap();
        let store = Store::new(conn.clone(), StoreConfig::default());
        let queue_settings = QueueSettings { lease: Duration::from_secs(3), ..QueueSettings::default() };
        let queues = Queues::new(conn, &queue_settings);
        let producer = Producer::new(
            store.clone(),
            queues.clone(),
            ProducerConfig {
                run_deadline: deadline,
                limits: gcrun_model::RequestLimits { webhook_private_addresses: true, ..Default::default() },
                ..ProducerConfig::default()
            },
        );
        let secret = WebhookSecret::parse(HOOK_SECRET).unwrap();
        let verify = Arc::new(move |id: &str, ts: u64, body: &[u8], sig: &str| secret.verify(id, ts, body, sig));
        let sink = WebhookSink::start(verify, SinkRules::default()).await.unwrap();
        Stack {
            redis,
            emu,
            store,
            queues,
            producer,
            hook_url: sink.url.clone(),
            sink: sink.log.clone(),
            queue_settings,
            _sink: sink,
        }
    }

    /// What `gcrun worker` would be built from, against this stack.
    pub fn worker_settings(&self, limits: LimiterConfig, run: RunSettings) -> WorkerSettings {
        WorkerSettings {
            redis: gcrun_store::RedisTarget::new(self.redis.url()),
            tenant: gcrun_model::Tenant::default(),
            genesys: GenesysSettings {
                environment: Environment::parse(&self.emu.base_url()).unwrap(),
                credentials: Credentials::new(CLIENT_ID, CLIENT_SECRET),
                client: ClientConfig::default(),
            },
            limiter: limits,
            policy: fast_worker_config(&self.hook_url),
            run,
            queues: self.queue_settings.clone(),
            store: StoreConfig::default(),
            webhook_secret: Some(gcrun_worker::webhook::WebhookKeys::parse(HOOK_SECRET).unwrap()),
            jitter_seed: Some(1),
        }
    }

    /// The steps' dependencies, for driving single steps without a queue
    /// worker (their follow-up jobs are pushed; nothing consumes them).
    pub async fn deps(&self, limits: LimiterConfig) -> Arc<Deps> {
        Worker::build(self.worker_settings(limits, RunSettings::default())).await.unwrap().deps().clone()
    }

    /// Starts a worker in this process, looking for new jobs every 20 ms
    /// besides the push announcements.
    pub async fn start_worker(&self, limits: LimiterConfig) -> WorkerHandle {
        let fast = RunSettings { poll_interval: Duration::from_millis(20), ..RunSettings::default() };
        self.start_worker_with(limits, fast).await
    }

    /// Starts a worker in this process with `settings`.
    pub async fn start_worker_with(&self, limits: LimiterConfig, settings: RunSettings) -> WorkerHandle {
        self.start_worker_serving(limits, settings, None).await
    }

    /// Starts a worker in this process from `settings` as they are.
    pub async fn start_worker_from(&self, settings: WorkerSettings) -> WorkerHandle {
        let worker = Worker::build(settings).await.unwrap();
        let deps = worker.deps().clone();
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(worker.run(None, async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        WorkerHandle { stop: tx, task, deps }
    }

    /// Starts a worker in this process, with its admin server on `admin`.
    pub async fn start_worker_serving(
        &self,
        limits: LimiterConfig,
        settings: RunSettings,
        admin: Option<tokio::net::TcpListener>,
    ) -> WorkerHandle {
        let settings = RunSettings { shutdown_timeout: Duration::from_secs(5), ..settings };
        let worker = Worker::build(self.worker_settings(limits, settings)).await.unwrap();
        let deps = worker.deps().clone();
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(worker.run(admin, async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        WorkerHandle { stop: tx, task, deps }
    }

    /// Starts `gcrun worker` as a separate process.
    pub fn spawn_worker_process(&self, extra: &[&str]) -> Child {
        self.worker_process(extra).spawn().expect("spawning gcrun worker")
    }

    /// The `gcrun worker` command against this stack (logging at `warn` to
    /// this process's stderr unless the caller changes that; its admin
    /// server on a port of its own choosing unless `extra` names one).
    pub fn worker_process(&self, extra: &[&str]) -> Command {
        let mut cmd = Command::new(gcrun_binary());
        cmd.arg("worker");
        if !extra.contains(&"--admin-listen") {
            cmd.args(["--admin-listen", "127.0.0.1:0"]);
        }
        cmd.args(["--poll-base-ms", "200", "--poll-cap-ms", "1000", "--fetch-interval-ms", "20"])
            .args(["--lease-secs", "3", "--shutdown-timeout-secs", "5", "--default-webhook-url", &self.hook_url])
            .args(["--webhook-private-networks", "true", "--slot-wait-ms", "2000"])
            .args(extra)
            .env("REDIS_URL", self.redis.url())
            .env("GENESYSCLOUD_REGION", self.emu.base_url())
            .env("GENESYSCLOUD_OAUTHCLIENT_ID", CLIENT_ID)
            .env("GENESYSCLOUD_OAUTHCLIENT_SECRET", CLIENT_SECRET)
            .env("GCRUN_WEBHOOK_SECRET", HOOK_SECRET)
            .env("GCRUN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        cmd
    }

    /// Walks run `id` from `accepted` to `completed` through the store's
    /// own transitions, its webhook owed: what a job that ended the run
    /// leaves before its inline webhook attempt is recorded.
    pub async fn end_owing_webhook(&self, id: &RunId) {
        use gcrun_store::RunUpdate;
        let now = gcrun_worker::now_ms();
        let submitted = RunUpdate::submitted(Some("remote-1".into()), "Queued".into(), now);
        let ended = RunUpdate::default().completed_at(now).webhook_owed();
        for (from, to, update) in [
            (RunStatus::Accepted, RunStatus::Validated, RunUpdate::default()),
            (RunStatus::Validated, RunStatus::Submitted, submitted),
            (RunStatus::Submitted, RunStatus::Completed, ended),
        ] {
            self.store.transition(id, from, to, now, "test", &update).await.unwrap();
        }
    }

    /// Every run's record, by id.
    pub async fn records(&self, ids: &[RunId]) -> HashMap<RunId, gcrun_store::RunRecord> {
        let mut out = HashMap::new();
        for id in ids {
            if let Some(r) = self.store.get_run_with_history(id).await.unwrap() {
                out.insert(*id, r);
            }
        }
        out
    }

    /// Waits until every run in `ids` is terminal and no job is pending.
    pub async fn wait_all_terminal(&self, ids: &[RunId], timeout: Duration) {
        let started = Instant::now();
        loop {
            let mut open = 0;
            for id in ids {
                match self.store.get_run(id).await.unwrap() {
                    Some(r) if r.status.is_terminal() => {}
                    _ => open += 1,
                }
            }
            let mut pending = 0;
            let mut depths = Vec::new();
            for q in self.queues.names.all() {
                let d = self.queues.depth(q).await.unwrap();
                pending += d.pending();
                depths.push((q.to_string(), d));
            }
            if open == 0 && pending == 0 {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "{open} runs still open and {pending} jobs pending after {timeout:?}: {depths:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A worker whose submits give up after two transient failures, so a
    /// failing Genesys dead-letters runs in well under a second.
    pub fn impatient(&self) -> WorkerSettings {
        let fast = RunSettings { poll_interval: Duration::from_millis(20), ..RunSettings::default() };
        let mut settings = self.worker_settings(limiter(60_000, 100, 100), fast);
        settings.policy.max_submit_attempts = 2;
        settings
    }

    /// Three runs the contract rejects (batch `a`, `a`, `b`) and two that died
    /// against a Genesys answering 503, all through the real pipeline.
    pub async fn dead_letters(&self) -> (Vec<RunId>, Vec<RunId>) {
        let mut rejected = Vec::new();
        for (i, batch) in ["a", "a", "b"].iter().enumerate() {
            let doc = json!({"flavor": "execute", "actionId": LOOKUP, "metadata": {"batch": batch},
                "inputs": {"customerId": format!("r{i}"), "channel": "fax"}});
            rejected.push(self.producer.enqueue_value(&doc).await.unwrap().run_id);
        }
        let worker = self.start_worker_from(self.impatient()).await;
        wait_until("the rejections", Duration::from_secs(20), || async {
            (self.count(RunStatus::Rejected).await == 3).then_some(())
        })
        .await;
        self.emu
            .emulator
            .set_faults(Faults { rate_5xx: 1.0, status_5xx: 503, oauth: false, ..Faults::default() })
            .unwrap();
        let mut died = Vec::new();
        for i in 0..2 {
            let doc = json!({"flavor": "execute", "actionId": LOOKUP, "metadata": {"batch": "c"},
                "inputs": {"customerId": format!("d{i}"), "channel": "chat"}});
            died.push(self.producer.enqueue_value(&doc).await.unwrap().run_id);
        }
        wait_until("the failing runs to be dead-lettered", Duration::from_secs(30), || async {
            (self.count(RunStatus::Dead).await == 2).then_some(())
        })
        .await;
        worker.stop().await;
        (rejected, died)
    }

    pub async fn count(&self, status: RunStatus) -> i64 {
        self.store.counts().await.unwrap().get(status.as_str()).copied().unwrap_or(0)
    }
}

/// The `gcrun` binary next to this test binary (`cargo test --workspace`
/// builds it before any test runs); built on demand otherwise.
pub fn gcrun_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    let bin = dir.join("gcrun");
    if !bin.exists() {
        let status = Command::new(env!("CARGO")).args(["build", "-p", "gcrun", "--bin", "gcrun"]).status().unwrap();
        assert!(status.success(), "building the gcrun binary");
    }
    bin
}

/// Sends SIGTERM (graceful) or SIGKILL (crash) to a child process.
pub fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
}

/// The suites (crash, storm, pause, outage, soak) run scaled down in
/// `scripts/test` and at the size issue #8 names with `GCRUN_SUITES=full`
/// (`scripts/suites`).
pub fn full_size() -> bool {
    std::env::var("GCRUN_SUITES").is_ok_and(|v| v == "full")
}

/// `ci` in `scripts/test`, `full` with `GCRUN_SUITES=full`.
pub fn scaled<T>(ci: T, full: T) -> T {
    if full_size() { full } else { ci }
}

/// A small seeded random source (xorshift64*) for suites that act at
/// random moments: the seed is printed, so a failing run can be replayed
/// with `GCRUN_SEED`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// From `GCRUN_SEED`, else from the clock; prints the seed.
    pub fn from_env(suite: &str) -> Self {
        let seed = std::env::var("GCRUN_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
        });
        println!("{suite}: GCRUN_SEED={seed}");
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..hi`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_millis().max(1) as u64;
        lo + Duration::from_millis(self.next_u64() % span)
    }
}

/// A child process whose stderr goes to a file, read back afterwards (for
/// secrets that must not show, and panics that must not happen).
#[derive(Debug)]
pub struct Logged {
    pub child: Child,
    pub log: PathBuf,
}

impl Logged {
    /// Starts `cmd` logging at `level` into `dir/name.log`.
    pub fn spawn(mut cmd: Command, dir: &std::path::Path, name: &str, level: &str) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd.env("GCRUN_LOG", level).stderr(Stdio::from(file)).spawn().unwrap();
        Self { child, log }
    }

    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Still running (it has not exited on its own).
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGKILL: a crash.
    pub fn kill(mut self) -> String {
        signal(&self.child, "KILL");
        let _ = self.child.wait();
        self.text()
    }

    /// SIGTERM, and the exit status of the graceful shutdown.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        signal(&self.child, "TERM");
        let status = self.child.wait().unwrap();
        (status, self.text())
    }
}

/// Dead-lettered as an unknown outcome (sent, answer lost): the at-most-once
/// end of a call whose answer never reached gcrun.
pub fn is_unknown_outcome(r: &gcrun_store::RunRecord) -> bool {
    r.status == RunStatus::Dead && r.last_error.as_deref().unwrap_or("").starts_with("sent; answer lost")
}
