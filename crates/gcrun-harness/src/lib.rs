//! Real parts for gcrun's demo and test suites, never mocks. A library
//! (not only a dev-dependency) because `gcrun demo` runs on the very same
//! parts as the tests, and users can build their own offline checks on it.
//!
//! - [`RedisServer`]: a private `redis-server` process on a free port in a
//!   temporary directory, stopped when dropped (AOF switchable on, so crash
//!   tests can kill and restart it over the same data).
//! - [`spawn_emulator`]: the Genesys Cloud emulator on `127.0.0.1:0`, in
//!   the test's runtime, stopped when its handle is dropped.
//! - [`sink::WebhookSink`]: a webhook receiver that checks signatures,
//!   can refuse on purpose, and logs what it accepted.
//! - [`wait_until`]: poll a condition with a deadline instead of sleeping
//!   and hoping.

pub mod sink;
pub mod topology;

pub use sink::{Delivery, SinkLog, SinkRules, WebhookSink};
pub use topology::{RedisCluster, RedisSentinels};

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gcrun_emulator::{Emulator, EmulatorConfig};

/// Options for a private Redis.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisOptions {
    /// Turn on the append-only file (`appendfsync always`), so data
    /// survives a SIGKILL of the server and a restart.
    pub appendonly: bool,
    /// Also serve TLS on a second port ([`RedisServer::tls_url`]), with a
    /// certificate for 127.0.0.1 signed by a CA made for this server alone
    /// ([`RedisServer::ca_file`]); needs the `openssl` command (Debian's
    /// `openssl` package).
    pub tls: bool,
    /// Require this password (`requirepass`); [`RedisServer::url`] then
    /// carries it.
    pub password: Option<&'static str>,
}

/// A private `redis-server` child process.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    tls_port: Option<u16>,
    options: RedisOptions,
    /// More `redis-server` arguments (cluster mode, `replicaof`).
    extra: Vec<String>,
    dir: tempfile::TempDir,
}

/// The `redis-server` to run: `$GCRUN_REDIS_SERVER`, else the one on PATH.
pub fn redis_server_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("GCRUN_REDIS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("redis-server")).find(|p| p.is_file()));
    on_path.ok_or_else(|| {
        "redis-server not found: install Debian's `redis-server` package (scripts/test and scripts/demo do this when run as root), or set GCRUN_REDIS_SERVER".to_string()
    })
}

/// A CA and a server certificate for 127.0.0.1 signed by it, in `dir`
/// (`ca.crt`, `server.crt`, `server.key`), made with the `openssl` command.
fn make_certificates(dir: &std::path::Path) -> Result<(), String> {
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .map_err(|e| e.to_string())?;
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=gcrun test CA"],
        ]
        .concat(),
        [&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]].concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("running openssl (install Debian's `openssl` package): {e}"))?;
        if !out.status.success() {
            return Err(format!("openssl {}: {}", args[0], String::from_utf8_lossy(&out.stderr)));
        }
    }
    Ok(())
}

/// A port that was free a moment ago. Callers retry on the rare race.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("binding 127.0.0.1:0 works")
}

impl RedisServer {
    /// Starts a server without persistence.
    pub fn start() -> Self {
        Self::start_with(RedisOptions::default())
    }

    /// Starts a server with `options`, on a fresh port and directory;
    /// panics when it cannot (what a test wants).
    pub fn start_with(options: RedisOptions) -> Self {
        Self::try_start_with(options).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a server with `options`, or says why it could not (what the
    /// demo wants). Retries on a fresh port when the free one was taken.
    pub fn try_start_with(options: RedisOptions) -> Result<Self, String> {
        Self::try_start_with_args(options, &[])
    }

    /// As [`try_start_with`](Self::try_start_with), with more
    /// `redis-server` arguments.
    pub fn try_start_with_args(options: RedisOptions, extra: &[String]) -> Result<Self, String> {
        let mut last_error = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().map_err(|e| format!("temp dir for redis: {e}"))?;
            let tls_port = options.tls.then(free_port);
            let mut server = Self { child: None, port: free_port(), tls_port, options, extra: extra.to_vec(), dir };
            if options.tls {
                make_certificates(server.dir.path())?;
            }
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = e,
            }
        }
        Err(format!("redis-server did not start after 5 tries: {last_error}"))
    }

    fn spawn(&mut self) -> Result<(), String> {
        let binary = redis_server_binary()?;
        let mut cmd = Command::new(&binary);
        cmd.arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no", "--protected-mode", "yes"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--logfile", "redis.log"]);
        if let Some(password) = self.options.password {
            cmd.args(["--requirepass", password]);
        }
        if let Some(tls_port) = self.tls_port {
            let file = |name: &str| self.dir.path().join(name);
            cmd.arg("--tls-port").arg(tls_port.to_string());
            cmd.arg("--tls-cert-file").arg(file("server.crt"));
            cmd.arg("--tls-key-file").arg(file("server.key"));
            cmd.arg("--tls-ca-cert-file").arg(file("ca.crt"));
            cmd.args(["--tls-auth-clients", "no"]);
        }
        if self.options.appendonly {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        cmd.args(&self.extra);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                    return Err(format!("redis-server exited with {status}: {}", log.lines().last().unwrap_or("")));
                }
            }
            if self.ping() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("redis-server did not answer PING within 10 s".into())
    }

    /// Whether the server answers `PING` now.
    pub fn ping(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if let Some(password) = self.options.password {
            let auth = format!("AUTH {password}\r\n");
            let mut ok = [0u8; 5];
            if s.write_all(auth.as_bytes()).is_err() || s.read_exact(&mut ok).is_err() || &ok != b"+OK\r\n" {
                return false;
            }
        }
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/` (with the password, if one is required).
    pub fn url(&self) -> String {
        match self.options.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// `rediss://127.0.0.1:<tls port>/` (with [`RedisOptions::tls`]).
    pub fn tls_url(&self) -> Option<String> {
        self.tls_port.map(|p| format!("rediss://127.0.0.1:{p}/"))
    }

    /// The PEM file of the CA that signed the TLS certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// SIGKILLs the server: a crash, not a shutdown.
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Starts the server again on the same port and directory (after
    /// [`kill`](Self::kill)); with AOF on, the data comes back.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.spawn() {
            panic!("redis-server did not restart: {e}");
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running emulator; stopped when dropped.
#[derive(Debug)]
pub struct EmulatorHandle {
    pub emulator: Emulator,
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl EmulatorHandle {
    /// `http://127.0.0.1:<port>`: what `GENESYSCLOUD_REGION` is set to.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts the emulator on `127.0.0.1:0` in the current tokio runtime.
pub async fn spawn_emulator(config: EmulatorConfig) -> EmulatorHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind emulator");
    let addr = listener.local_addr().expect("emulator address");
    let emulator = Emulator::new(config);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = emulator.clone();
    tokio::spawn(async move {
        let _ = gcrun_emulator::serve(listener, served, async {
            let _ = rx.await;
        })
        .await;
    });
    EmulatorHandle { emulator, addr, shutdown: Some(tx) }
}

/// Polls `check` until it returns `Some`, or panics with `what` after
/// `timeout`. The way to wait for an outcome without sleeping and hoping.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
