//! `REDIS_URL` and what it names.

use crate::{CONNECT_TIMEOUT, ConnectError, RESPONSE_TIMEOUT, install_crypto_provider};

/// The shape of the Redis gcrun talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server (it may have replicas; gcrun talks to it alone).
    Single,
    /// The primary that Sentinel names for `service`.
    Sentinel { service: String },
    /// A Redis Cluster.
    Cluster,
}

/// Where Redis is (see the crate's table of URLs; credentials allowed,
/// never shown), and for TLS a CA to trust instead of the system's store
/// (a private CA). A server's certificate is always verified.
#[derive(Clone)]
pub struct RedisTarget {
    url: String,
    ca_pem: Option<Vec<u8>>,
    parsed: Result<Parsed, String>,
}

/// A multi-node URL taken apart.
#[derive(Clone)]
struct Parsed {
    topology: Topology,
    tls: bool,
    /// `user:pass` or `:pass`, as written (percent-encoding kept).
    userinfo: Option<String>,
    /// `host:port`, at least one.
    nodes: Vec<String>,
    db: Option<i64>,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("url", &shown_redis_url(&self.url))
            .field("ca", &self.ca_pem.is_some())
            .finish()
    }
}

/// A Redis URL as logs and errors may show it: without its password.
/// Works for the multi-host forms, which are not URLs to a URL parser.
pub fn shown_redis_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".into();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let masked = if userinfo.contains(':') { format!("{user}:***") } else { user.to_string() };
            format!("{scheme}://{masked}@{hosts}{tail}")
        }
        None => url.to_string(),
    }
}

fn parse(url: &str) -> Result<Parsed, String> {
    let shown = shown_redis_url(url);
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("REDIS_URL {shown} is not a URL"))?;
    let (topology_kind, tls, default_port) = match scheme {
        "redis" | "rediss" | "unix" | "redis+unix" => {
            return Ok(Parsed {
                topology: Topology::Single,
                tls: scheme == "rediss",
                userinfo: None,
                nodes: Vec::new(),
                db: None,
            });
        }
        "redis+sentinel" => ("sentinel", false, 26379),
        "rediss+sentinel" => {
            return Err(format!(
                "REDIS_URL {shown}: TLS to Sentinel is not supported yet; use redis+sentinel:// on a private network, or a TLS proxy"
            ));
        }
        "redis+cluster" => ("cluster", false, 6379),
        "rediss+cluster" => ("cluster", true, 6379),
        other => {
            return Err(format!(
                "REDIS_URL {shown}: unknown scheme {other:?} (redis, rediss, redis+sentinel, redis+cluster, rediss+cluster)"
            ));
        }
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h),
        None => (None, authority),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| if has_port(h) { h.to_string() } else { format!("{h}:{default_port}") })
        .collect();
    if nodes.is_empty() {
        return Err(format!("REDIS_URL {shown} names no host"));
    }
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let (topology, db) = if topology_kind == "sentinel" {
        let service = segments
            .next()
            .ok_or_else(|| format!("REDIS_URL {shown}: name the service the sentinels watch (…/mymaster)"))?;
        (Topology::Sentinel { service: service.to_string() }, segments.next())
    } else {
        (Topology::Cluster, segments.next())
    };
    let db = db
        .map(|d| d.parse::<i64>().map_err(|_| format!("REDIS_URL {shown}: database {d:?} is not a number")))
        .transpose()?;
    if topology == Topology::Cluster && db.is_some_and(|d| d != 0) {
        return Err(format!("REDIS_URL {shown}: a Redis Cluster has only database 0"));
    }
    if segments.next().is_some() {
        return Err(format!("REDIS_URL {shown}: unexpected path after the database"));
    }
    Ok(Parsed { topology, tls, userinfo, nodes, db })
}

fn has_port(host: &str) -> bool {
    match host.rsplit_once(':') {
        // `[::1]` alone ends in ']'; `[::1]:6379` has digits after the last ':'.
        Some((_, port)) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !host.ends_with(']'),
        None => false,
    }
}

impl RedisTarget {
    /// Takes `url` as it is; a malformed multi-node URL is reported when
    /// a connection is opened.
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        let parsed = parse(&url);
        Self { url, ca_pem: None, parsed }
    }

    /// Trusts the CA(s) in `path` (PEM) for TLS instead of the system's
    /// store.
    pub fn with_ca_file(mut self, path: &std::path::Path) -> Result<Self, ConnectError> {
        let pem = std::fs::read(path)
            .map_err(|e| ConnectError::Config(format!("reading the Redis CA file {}: {e}", path.display())))?;
        self.ca_pem = Some(pem);
        Ok(self)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// What the URL names (one server when it cannot be parsed: opening
    /// it then reports why).
    pub fn topology(&self) -> Topology {
        self.parsed.as_ref().map_or(Topology::Single, |p| p.topology.clone())
    }

    /// Whether the URL can be used, with the reason when not.
    pub fn check(&self) -> Result<(), ConnectError> {
        self.parsed.as_ref().map(|_| ()).map_err(|e| ConnectError::Config(e.clone()))
    }

    fn parsed(&self) -> Result<&Parsed, ConnectError> {
        self.parsed.as_ref().map_err(|e| ConnectError::Config(e.clone()))
    }

    /// The database a multi-node URL names (0 when none).
    pub(crate) fn db(&self) -> i64 {
        self.parsed.as_ref().ok().and_then(|p| p.db).unwrap_or(0)
    }

    /// A client for a one-server URL (no connection yet).
    pub fn single_client(&self) -> Result<redis::Client, ConnectError> {
        self.check()?;
        self.client_for(&self.url)
    }

    /// A client for one server, by URL, with this target's CA.
    fn client_for(&self, url: &str) -> Result<redis::Client, ConnectError> {
        if url.starts_with("rediss:") {
            install_crypto_provider();
        }
        Ok(match &self.ca_pem {
            Some(pem) if url.starts_with("rediss:") => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) },
            )?,
            _ => redis::Client::open(url)?,
        })
    }

    /// `redis[s]://[userinfo@]node[/db]` for each node of a multi-node URL.
    pub(crate) fn node_urls(&self) -> Result<Vec<String>, ConnectError> {
        let p = self.parsed()?;
        let scheme = if p.tls { "rediss" } else { "redis" };
        let auth = p.userinfo.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
        let db = p.db.map(|d| format!("/{d}")).unwrap_or_default();
        Ok(p.nodes.iter().map(|n| format!("{scheme}://{auth}{n}{db}")).collect())
    }

    /// A client per seed node of a Cluster URL.
    pub(crate) fn node_clients(&self) -> Result<Vec<redis::Client>, ConnectError> {
        self.node_urls()?.iter().map(|u| self.client_for(u)).collect()
    }

    /// A Cluster client over the URL's seeds.
    pub(crate) fn cluster_client(&self) -> Result<redis::cluster::ClusterClient, ConnectError> {
        let p = self.parsed()?;
        if p.tls {
            install_crypto_provider();
        }
        let mut builder = redis::cluster::ClusterClientBuilder::new(self.node_urls()?)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(6);
        if let Some(pem) = &self.ca_pem {
            builder = builder.certs(redis::TlsCertificates { client_tls: None, root_cert: Some(pem.clone()) });
        }
        Ok(builder.build()?)
    }

    /// For a Sentinel URL: the sentinels' URLs (no credentials: the
    /// URL's credentials are the data nodes'), the service, and how to
    /// reach the nodes the sentinels name.
    pub(crate) fn sentinel_parts(
        &self,
    ) -> Result<(Vec<String>, String, redis::sentinel::SentinelNodeConnectionInfo), ConnectError> {
        let p = self.parsed()?;
        let Topology::Sentinel { service } = &p.topology else {
            return Err(ConnectError::Config("not a Sentinel URL".into()));
        };
        let sentinels = p.nodes.iter().map(|n| format!("redis://{n}")).collect();
        // The data nodes' credentials and database, read the way redis-rs
        // reads any URL.
        let auth = p.userinfo.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
        let db = p.db.unwrap_or(0);
        let info = redis::IntoConnectionInfo::into_connection_info(format!("redis://{auth}placeholder/{db}").as_str())?;
        let node = redis::sentinel::SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(info.redis_settings().clone());
        Ok((sentinels, service.clone(), node))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn one_server_urls_are_single() {
        for url in ["redis://127.0.0.1:6379/", "rediss://h:6380/2", "redis://:pw@h/0"] {
            let t = RedisTarget::new(url);
            assert_eq!(t.topology(), Topology::Single, "{url}");
            t.check().unwrap();
        }
    }

    #[test]
    fn sentinel_urls_name_their_sentinels_service_and_database() {
        let t = RedisTarget::new("redis+sentinel://:s3cret@10.0.0.1,10.0.0.2:5000/gcrun/3");
        assert_eq!(t.topology(), Topology::Sentinel { service: "gcrun".into() });
        let (sentinels, service, _) = t.sentinel_parts().unwrap();
        assert_eq!(sentinels, ["redis://10.0.0.1:26379", "redis://10.0.0.2:5000"]);
        assert_eq!(service, "gcrun");
        let err = RedisTarget::new("redis+sentinel://10.0.0.1").check().unwrap_err().to_string();
        assert!(err.contains("name the service"), "{err}");
    }

    #[test]
    fn cluster_urls_list_their_seeds_with_credentials_and_tls() {
        let t = RedisTarget::new("rediss+cluster://u:pw@a:7000,b:7001, c");
        assert_eq!(t.topology(), Topology::Cluster);
        assert_eq!(t.node_urls().unwrap(), ["rediss://u:pw@a:7000", "rediss://u:pw@b:7001", "rediss://u:pw@c:6379"]);
        let err = RedisTarget::new("redis+cluster://a:7000/2").check().unwrap_err().to_string();
        assert!(err.contains("only database 0"), "{err}");
    }

    #[test]
    fn bad_urls_say_why_without_the_password() {
        for (url, says) in [
            ("redis+cluster://:hunter2@/", "names no host"),
            ("memcached://:hunter2@h", "unknown scheme"),
            ("rediss+sentinel://:hunter2@h/m", "not supported yet"),
            ("redis+sentinel://:hunter2@h/m/x", "not a number"),
        ] {
            let err = RedisTarget::new(url).check().unwrap_err().to_string();
            assert!(err.contains(says), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn shown_urls_hide_passwords_in_every_form() {
        assert_eq!(shown_redis_url("redis://:pw@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(shown_redis_url("redis+cluster://u:pw@a:1,b:2"), "redis+cluster://u:***@a:1,b:2");
        assert_eq!(shown_redis_url("redis+sentinel://a:1,b:2/m"), "redis+sentinel://a:1,b:2/m");
        assert_eq!(shown_redis_url("redis://user@h"), "redis://user@h");
        assert_eq!(shown_redis_url("nonsense"), "(not a URL)");
        let debug = format!("{:?}", RedisTarget::new("redis+sentinel://:topsecret@a/m"));
        assert!(!debug.contains("topsecret"), "{debug}");
    }
}
