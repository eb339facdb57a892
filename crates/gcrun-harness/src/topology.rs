//! Real Redis topologies on this machine: a Cluster of private servers and
//! a primary with a replica watched by three sentinels. Each is built from
//! [`RedisServer`] processes on free ports and stopped when dropped.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{RedisOptions, RedisServer, free_port, redis_server_binary};

/// Runs `cmd` on the server at `port` (a short-lived connection).
fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> Result<T, String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).map_err(|e| e.to_string())?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2)).map_err(|e| e.to_string())?;
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    cmd.query(&mut conn).map_err(|e| format!("{port}: {e}"))
}

/// Waits for `check` with a deadline (these builders are synchronous).
fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<bool, String>) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match check() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("timed out after {timeout:?} waiting for {what} {last}"))
}

fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')).map(|v| v.trim().to_string())
}

/// A Redis Cluster of `n` primaries (no replicas), slots split evenly.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts and forms the cluster; panics when it cannot.
    pub fn start(primaries: usize) -> Self {
        Self::try_start(primaries).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start(primaries: usize) -> Result<Self, String> {
        let mut nodes = Vec::new();
        let mut buses = Vec::new();
        for _ in 0..primaries.max(1) {
            // The bus port is chosen too: port + 10000 may not exist.
            let bus = free_port();
            buses.push(bus);
            let args: Vec<String> = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "2000",
                "--cluster-port",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([bus.to_string()])
            .collect();
            nodes.push(RedisServer::try_start_with_args(RedisOptions::default(), &args)?);
        }
        let n = nodes.len();
        for (i, node) in nodes.iter().enumerate() {
            let (first, last) = (i * 16384 / n, (i + 1) * 16384 / n - 1);
            let _: () = query(node.port(), redis::cmd("CLUSTER").arg("ADDSLOTSRANGE").arg(first).arg(last))?;
        }
        for (node, bus) in nodes.iter().zip(&buses).skip(1) {
            let meet = redis::cmd("CLUSTER").arg("MEET").arg("127.0.0.1").arg(node.port()).arg(*bus).clone();
            let _: () = query(nodes[0].port(), &meet)?;
        }
        let cluster = Self { nodes };
        wait_for("the cluster to form", Duration::from_secs(30), || {
            for node in &cluster.nodes {
                let info: String = query(node.port(), redis::cmd("CLUSTER").arg("INFO"))?;
                let ok = info_field(&info, "cluster_state").as_deref() == Some("ok")
                    && info_field(&info, "cluster_known_nodes") == Some(n.to_string());
                if !ok {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        Ok(cluster)
    }

    /// `redis+cluster://127.0.0.1:<p1>,…`: every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())).collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The node (in node order) that serves `key`'s slot.
    pub fn node_of(&self, key: &str) -> usize {
        let slot: usize = query(self.nodes[0].port(), redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)).unwrap_or(0);
        let n = self.nodes.len();
        // The ranges `try_start` gave out.
        (0..n).find(|i| slot >= i * 16384 / n && slot < (i + 1) * 16384 / n).unwrap_or(n - 1)
    }

    /// How many keys each node holds (`DBSIZE`), in node order.
    pub fn keys_per_node(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| query(n.port(), &redis::cmd("DBSIZE")).unwrap_or(0)).collect()
    }
}

/// One `redis-server --sentinel` process.
#[derive(Debug)]
struct Sentinel {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A primary, one replica and three sentinels watching them (quorum 2,
/// a server is down after 1 s without an answer).
#[derive(Debug)]
pub struct RedisSentinels {
    servers: Vec<RedisServer>,
    sentinels: Vec<Sentinel>,
}

/// The service name the sentinels watch.
pub const SERVICE: &str = "gcrun";

impl RedisSentinels {
    /// Starts them all and waits until each sentinel knows the replica and
    /// the other two sentinels (so a failover can be voted); panics when
    /// it cannot.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_start() -> Result<Self, String> {
        let primary = RedisServer::try_start_with_args(RedisOptions::default(), &[])?;
        let replica_of = ["--replicaof".to_string(), "127.0.0.1".into(), primary.port().to_string()];
        let replica = RedisServer::try_start_with_args(RedisOptions::default(), &replica_of)?;
        let replica_port = replica.port();
        wait_for("the replica to sync", Duration::from_secs(20), || {
            let info: String = query(replica_port, redis::cmd("INFO").arg("replication"))?;
            Ok(info_field(&info, "master_link_status").as_deref() == Some("up"))
        })?;
        let primary_port = primary.port();
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            sentinels.push(spawn_sentinel(primary_port)?);
        }
        let set = Self { servers: vec![primary, replica], sentinels };
        wait_for("the sentinels to know each other and the replica", Duration::from_secs(30), || {
            for s in &set.sentinels {
                let fields: Vec<String> = query(s.port, redis::cmd("SENTINEL").arg("MASTER").arg(SERVICE))?;
                let map: HashMap<&str, &str> =
                    fields.chunks(2).filter_map(|kv| Some((kv.first()?.as_str(), kv.get(1)?.as_str()))).collect();
                if map.get("num-other-sentinels") != Some(&"2") || map.get("num-slaves") != Some(&"1") {
                    return Ok(false);
                }
            }
            Ok(true)
        })?;
        Ok(set)
    }

    /// `redis+sentinel://127.0.0.1:<s1>,…/gcrun`.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
        format!("redis+sentinel://{}/{SERVICE}", seeds.join(","))
    }

    /// The primary's port, as a sentinel that answers says.
    pub fn primary_port(&self) -> Result<u16, String> {
        let mut last = String::new();
        for s in &self.sentinels {
            match query::<(String, u16)>(s.port, redis::cmd("SENTINEL").arg("GET-MASTER-ADDR-BY-NAME").arg(SERVICE)) {
                Ok((_, port)) => return Ok(port),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// SIGKILLs the server that is primary now (a crash, no failover
    /// handshake) and returns its port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port().unwrap_or_else(|e| panic!("no sentinel names a primary: {e}"));
        let server = self.servers.iter_mut().find(|s| s.port() == port).expect("the primary is one of ours");
        server.kill();
        port
    }

    /// Waits until the sentinels name a primary other than `old` and it
    /// answers as one; returns its port.
    pub fn wait_for_failover(&self, old: u16, timeout: Duration) -> Result<u16, String> {
        let mut new = 0;
        wait_for("the sentinels to promote the replica", timeout, || {
            let port = self.primary_port()?;
            if port == old {
                return Ok(false);
            }
            let info: String = query(port, redis::cmd("INFO").arg("replication"))?;
            new = port;
            Ok(info_field(&info, "role").as_deref() == Some("master"))
        })?;
        Ok(new)
    }

    /// The data servers (the first started as primary).
    pub fn servers(&mut self) -> &mut [RedisServer] {
        &mut self.servers
    }
}

fn spawn_sentinel(primary: u16) -> Result<Sentinel, String> {
    let binary = redis_server_binary()?;
    let mut last = String::new();
    for _ in 0..5 {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile sentinel.log\n\
                 sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds {SERVICE} 1000\n\
                 sentinel failover-timeout {SERVICE} 10000\n\
                 sentinel parallel-syncs {SERVICE} 1\n",
                dir = dir.path().display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let child = Command::new(&binary)
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawning {} --sentinel: {e}", binary.display()))?;
        let mut sentinel = Sentinel { child, port, _dir: dir };
        let up = wait_for("a sentinel to answer", Duration::from_secs(10), || {
            if let Ok(Some(status)) = sentinel.child.try_wait() {
                return Err(format!("sentinel exited with {status}"));
            }
            Ok(query::<String>(port, &redis::cmd("PING")).is_ok())
        });
        match up {
            Ok(()) => return Ok(sentinel),
            Err(e) => last = e,
        }
    }
    Err(format!("no sentinel started after 5 tries: {last}"))
}
