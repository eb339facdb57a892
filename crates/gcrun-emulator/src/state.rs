//! The emulator's memory: tokens, runs, load, faults and statistics. All of
//! it sits behind short-held `std::sync::Mutex`es (never held across an
//! await), so handlers stay simple and the server stays fast.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gcrun_model::InputSchema;
use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::config::{EmulatorConfig, Faults, Limits, Timings};
use crate::directives::Directives;
use crate::fixtures::{ActionFixture, FlowFixture, input_schema};

/// A running emulator's shared state. Cheap to clone.
#[derive(Clone)]
pub struct Emulator(pub(crate) Arc<Inner>);

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator").finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub clients: HashMap<String, String>,
    pub actions: BTreeMap<String, (ActionFixture, Option<Arc<InputSchema>>)>,
    pub flows: HashMap<String, FlowFixture>,
    pub token_ttl: Duration,
    pub timings: Timings,
    pub limits: Limits,
    pub faults: Mutex<FaultState>,
    pub tokens: Mutex<HashMap<String, TokenInfo>>,
    pub runs: Mutex<HashMap<String, Run>>,
    pub load: Mutex<Load>,
    pub stats: Mutex<Stats>,
    /// Remaining transient answers of `execute` calls, keyed by action and
    /// body, for the `transient=N` directive.
    pub execute_transients: Mutex<HashMap<String, u32>>,
}

pub(crate) struct FaultState {
    pub faults: Faults,
    pub rng: fastrand::Rng,
    pub injected: u64,
}

pub(crate) struct TokenInfo {
    pub expires_at: Instant,
    pub requests: VecDeque<Instant>,
}

/// Admission state: recent executions (rate) and what is in progress
/// (concurrency).
#[derive(Default)]
pub(crate) struct Load {
    pub executions: VecDeque<Instant>,
    /// End times of runs and flow executions in progress.
    pub active_until: Vec<Instant>,
    /// `execute` calls being answered.
    pub executing: u64,
}

/// What a run of the `runs` flavor or a flow execution is.
#[derive(Debug, Clone)]
pub(crate) enum RunKind {
    Action { definition_id: String },
    Flow { flow_id: String, flow_version: String },
}

#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub id: String,
    pub kind: RunKind,
    pub name: Option<String>,
    pub created: OffsetDateTime,
    pub started: Instant,
    pub queued_for: Duration,
    pub running_for: Duration,
    pub never: bool,
    pub outcome: Result<Value, (String, String)>,
    pub transient_left: u32,
    pub transient_code: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Queued,
    Running,
    Done,
}

impl Run {
    pub fn phase(&self, now: Instant) -> Phase {
        let elapsed = now.saturating_duration_since(self.started);
        if elapsed < self.queued_for {
            Phase::Queued
        } else if self.never || elapsed < self.queued_for + self.running_for {
            Phase::Running
        } else {
            Phase::Done
        }
    }

    pub fn ends_at(&self) -> Instant {
        if self.never {
            self.started + Duration::from_secs(365 * 86_400)
        } else {
            self.started + self.queued_for + self.running_for
        }
    }

    pub fn at(&self, offset: Duration) -> OffsetDateTime {
        self.created + offset
    }
}

/// Why a submission was refused with 429.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limited {
    pub retry_after_secs: u64,
    pub allowed: u64,
    pub count: u64,
    pub reset_secs: u64,
    pub key: &'static str,
}

/// What the emulator saw, served at `GET /emulator/stats`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// `METHOD /route/{template}` → status → count.
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
    /// Every 429 served, enforced or injected.
    pub too_many_requests: u64,
    /// 429s served because a configured limit was reached.
    pub limit_429s: u64,
    pub injected: InjectedStats,
    /// Most runs in progress at once.
    pub peak_concurrency: u64,
    /// Runs in progress now (filled in when read).
    pub current_concurrency: u64,
    /// Accepted submissions of any flavor.
    pub submissions: u64,
    /// Submissions that reused a `runName` (runs) or `name` (workflow).
    pub duplicate_submissions: u64,
    /// The reused names and how often each was submitted.
    pub duplicate_run_names: BTreeMap<String, u64>,
    /// Admitted `execute` calls whose action and body repeat an earlier
    /// admitted call's exactly. An execute carries no name, so this is the
    /// emulator's only way to see one run executed twice; it counts a
    /// deliberate repeat too (tests send each run's inputs once).
    pub duplicate_executes: u64,
    pub tokens_issued: u64,
    pub token_requests_refused: u64,
    #[serde(skip)]
    pub run_names: HashMap<String, u64>,
    /// Hashes of admitted execute calls (action and body).
    #[serde(skip)]
    pub executes: std::collections::HashSet<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InjectedStats {
    pub too_many_requests: u64,
    pub server_errors: u64,
    pub run_errors: u64,
    pub dropped: u64,
    pub malformed: u64,
}

/// A fault the dice can throw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    TooManyRequests,
    ServerError,
    RunError,
    Drop,
    Malformed,
}

/// Locks a mutex, recovering from poisoning: a panicking handler must not
/// take the whole emulator down with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Emulator {
    pub fn new(config: EmulatorConfig) -> Self {
        let actions = config
            .fixtures
            .actions
            .iter()
            .map(|a| {
                let schema = input_schema(&a.contract).and_then(|s| InputSchema::compile(s).ok()).map(Arc::new);
                (a.id.clone(), (a.clone(), schema))
            })
            .collect();
        let inner = Inner {
            clients: config.fixtures.clients.iter().map(|c| (c.client_id.clone(), c.client_secret.clone())).collect(),
            actions,
            flows: config.fixtures.flows.iter().map(|f| (f.id.clone(), f.clone())).collect(),
            token_ttl: config.token_ttl,
            timings: config.timings,
            limits: config.limits,
            faults: Mutex::new(FaultState {
                faults: config.faults,
                rng: fastrand::Rng::with_seed(config.seed),
                injected: 0,
            }),
            tokens: Mutex::new(HashMap::new()),
            runs: Mutex::new(HashMap::new()),
            load: Mutex::new(Load::default()),
            stats: Mutex::new(Stats::default()),
            execute_transients: Mutex::new(HashMap::new()),
        };
        Self(Arc::new(inner))
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> Stats {
        let current = self.current_concurrency();
        let mut stats = lock(&self.0.stats).clone();
        stats.current_concurrency = current;
        stats
    }

    pub fn reset_stats(&self) {
        let mut stats = lock(&self.0.stats);
        let peak = self.current_concurrency();
        *stats = Stats { peak_concurrency: peak, ..Stats::default() };
    }

    pub fn faults(&self) -> Faults {
        lock(&self.0.faults).faults.clone()
    }

    /// Replaces the fault settings and restarts the fault budget.
    pub fn set_faults(&self, faults: Faults) -> Result<(), String> {
        faults.validate()?;
        let mut state = lock(&self.0.faults);
        state.faults = faults;
        state.injected = 0;
        Ok(())
    }

    /// The access tokens it has issued that are still live (for tests that
    /// check a client never shows one).
    pub fn live_tokens(&self) -> Vec<String> {
        lock(&self.0.tokens).keys().cloned().collect()
    }

    /// Forgets every issued token, as if all had expired.
    pub fn revoke_tokens(&self) {
        lock(&self.0.tokens).clear();
    }

    pub(crate) fn roll(&self, fault: Fault) -> bool {
        let mut state = lock(&self.0.faults);
        let f = &state.faults;
        let rate = match fault {
            Fault::TooManyRequests => f.rate_429,
            Fault::ServerError => f.rate_5xx,
            Fault::RunError => f.rate_run_error,
            Fault::Drop => f.rate_drop,
            Fault::Malformed => f.rate_malformed,
        };
        if rate <= 0.0 || f.budget.is_some_and(|b| state.injected >= b) {
            return false;
        }
        if state.rng.f64() >= rate {
            return false;
        }
        state.injected += 1;
        drop(state);
        let mut stats = lock(&self.0.stats);
        match fault {
            Fault::TooManyRequests => {
                stats.injected.too_many_requests += 1;
            }
            Fault::ServerError => stats.injected.server_errors += 1,
            Fault::RunError => stats.injected.run_errors += 1,
            Fault::Drop => stats.injected.dropped += 1,
            Fault::Malformed => stats.injected.malformed += 1,
        }
        true
    }

    pub(crate) fn record_request(&self, endpoint: String, status: String) {
        let mut stats = lock(&self.0.stats);
        if status == "429" {
            stats.too_many_requests += 1;
        }
        *stats.requests.entry(endpoint).or_default().entry(status).or_default() += 1;
    }

    pub(crate) fn issue_token(&self) -> String {
        let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let info = TokenInfo { expires_at: Instant::now() + self.0.token_ttl, requests: VecDeque::new() };
        let mut tokens = lock(&self.0.tokens);
        let now = Instant::now();
        tokens.retain(|_, t| t.expires_at > now);
        tokens.insert(token.clone(), info);
        lock(&self.0.stats).tokens_issued += 1;
        token
    }

    /// Checks a bearer token; `Err(true)` when it exists but expired.
    /// Counts the request against the per-token limit when one is set.
    pub(crate) fn check_token(&self, token: &str) -> Result<Result<(), Limited>, bool> {
        let now = Instant::now();
        let mut tokens = lock(&self.0.tokens);
        let Some(info) = tokens.get_mut(token) else { return Err(false) };
        if info.expires_at <= now {
            tokens.remove(token);
            return Err(true);
        }
        let Some(limit) = self.0.limits.requests_per_token else { return Ok(Ok(())) };
        let window = self.0.limits.window;
        while info.requests.front().is_some_and(|t| now.duration_since(*t) >= window) {
            info.requests.pop_front();
        }
        if info.requests.len() as u64 >= u64::from(limit) {
            let reset = info.requests.front().map_or(window, |t| window.saturating_sub(now.duration_since(*t)));
            return Ok(Err(Limited {
                retry_after_secs: ceil_secs(reset),
                allowed: limit.into(),
                count: info.requests.len() as u64,
                reset_secs: ceil_secs(reset),
                key: "token.rate.per.minute",
            }));
        }
        info.requests.push_back(now);
        Ok(Ok(()))
    }

    fn current_concurrency(&self) -> u64 {
        let mut load = lock(&self.0.load);
        let now = Instant::now();
        load.active_until.retain(|t| *t > now);
        load.active_until.len() as u64 + load.executing
    }

    /// Admits one execution under the rate and concurrency limits. On
    /// success the execution is counted: `until` is when an asynchronous run
    /// ends, `None` an execute call the caller must [`finish`](Self::finish).
    pub(crate) fn admit(&self, until: Option<Instant>) -> Result<(), Limited> {
        let limits = self.0.limits;
        let now = Instant::now();
        let mut load = lock(&self.0.load);
        while load.executions.front().is_some_and(|t| now.duration_since(*t) >= limits.window) {
            load.executions.pop_front();
        }
        load.active_until.retain(|t| *t > now);
        if let Some(limit) = limits.executions_per_window {
            let count = load.executions.len() as u64;
            if count >= u64::from(limit) {
                let reset = load
                    .executions
                    .front()
                    .map_or(limits.window, |t| limits.window.saturating_sub(now.duration_since(*t)));
                drop(load);
                lock(&self.0.stats).limit_429s += 1;
                return Err(Limited {
                    retry_after_secs: ceil_secs(reset),
                    allowed: limit.into(),
                    count,
                    reset_secs: ceil_secs(reset),
                    key: "executions.per.minute",
                });
            }
        }
        let current = load.active_until.len() as u64 + load.executing;
        if let Some(max) = limits.max_concurrent {
            if current >= u64::from(max) {
                let soonest = load.active_until.iter().min().map(|t| t.saturating_duration_since(now));
                drop(load);
                lock(&self.0.stats).limit_429s += 1;
                let wait = soonest.unwrap_or(Duration::from_secs(1));
                return Err(Limited {
                    retry_after_secs: ceil_secs(wait),
                    allowed: max.into(),
                    count: current,
                    reset_secs: ceil_secs(wait),
                    key: "executions.concurrent",
                });
            }
        }
        load.executions.push_back(now);
        match until {
            Some(t) => load.active_until.push(t),
            None => load.executing += 1,
        }
        let now_active = current + 1;
        drop(load);
        let mut stats = lock(&self.0.stats);
        stats.submissions += 1;
        stats.peak_concurrency = stats.peak_concurrency.max(now_active);
        Ok(())
    }

    /// Ends an execute call admitted with `admit(None)`.
    pub(crate) fn finish(&self) {
        let mut load = lock(&self.0.load);
        load.executing = load.executing.saturating_sub(1);
    }

    pub(crate) fn note_run_name(&self, name: Option<&str>) {
        let Some(name) = name else { return };
        let mut stats = lock(&self.0.stats);
        let seen = {
            let n = stats.run_names.entry(name.to_string()).or_default();
            *n += 1;
            *n
        };
        if seen > 1 {
            stats.duplicate_submissions += 1;
            stats.duplicate_run_names.insert(name.to_string(), seen);
        }
    }

    /// Counts an admitted execute call of `action` with `body`, and whether
    /// it repeats one.
    pub(crate) fn note_execute(&self, action: &str, body: &[u8]) {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut h = DefaultHasher::new();
        (action, body).hash(&mut h);
        let mut stats = lock(&self.0.stats);
        if !stats.executes.insert(h.finish()) {
            stats.duplicate_executes += 1;
        }
    }

    /// Creates a run (of the `runs` flavor or a flow execution).
    pub(crate) fn new_run(
        &self,
        kind: RunKind,
        name: Option<String>,
        inputs: &Map<String, Value>,
        output: Value,
    ) -> Run {
        let d = Directives::from_inputs(inputs);
        let t = self.0.timings;
        let outcome = match &d.fail {
            Some(code) => {
                let code = if code.is_empty() { "action_failed".to_string() } else { code.clone() };
                Err((code, "the emulated action failed as its inputs asked".to_string()))
            }
            None => Ok(output),
        };
        let (transient_left, transient_code) = d.transient.unwrap_or((0, String::new()));
        Run {
            id: uuid::Uuid::new_v4().to_string(),
            kind,
            name,
            created: OffsetDateTime::now_utc(),
            started: Instant::now(),
            queued_for: t.queued_for,
            running_for: d.slow.unwrap_or(t.running_for),
            never: d.never,
            outcome,
            transient_left,
            transient_code,
        }
    }
}

pub(crate) fn ceil_secs(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}
