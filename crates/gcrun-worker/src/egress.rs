//! Where webhooks may go.
//!
//! A webhook URL comes from whoever enqueued the run, so by default gcrun
//! refuses to connect to addresses that reach inside its own network:
//! loopback, private (RFC 1918, IPv6 unique-local), link-local (where cloud
//! metadata services answer, `169.254.169.254`), shared (CGNAT),
//! multicast, broadcast, documentation, benchmarking and reserved ranges,
//! and IPv6 forms that embed one of those (mapped, 6to4, NAT64). The check
//! is on the addresses the connection is actually made to: the HTTP
//! client's resolver drops refused addresses after DNS resolution, so a
//! name that resolves (or re-binds) to an internal address cannot slip
//! past, and an address literal in the URL is checked before sending.
//! Receivers on a private network opt in (`GCRUN_WEBHOOK_PRIVATE_NETWORKS`);
//! the demo and the tests do, since their receivers listen on loopback.
//!
//! What the submitter sees of a refusal is the same as of a closed port
//! ("could not connect"): the stored error never tells which addresses or
//! ports inside the network answer.

use std::net::SocketAddr;

pub use gcrun_model::egress::{is_public, is_public_v4, is_public_v6};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Whether webhooks may reach private networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Egress {
    /// Public addresses only (the default).
    #[default]
    PublicOnly,
    /// Any address (receivers on a private network, loopback in tests).
    PrivateAllowed,
}

/// The URL names an address literal that `egress` refuses.
pub fn literal_refused(url: &Url, egress: Egress) -> bool {
    if egress == Egress::PrivateAllowed {
        return false;
    }
    match url.host() {
        Some(Host::Ipv4(ip)) => !is_public_v4(ip),
        Some(Host::Ipv6(ip)) => !is_public_v6(ip),
        _ => false,
    }
}

/// The refusal, as the HTTP client reports it (and the worker logs it).
#[derive(Debug, thiserror::Error)]
#[error("no address of this host may receive webhooks (loopback, private, link-local or reserved)")]
pub struct Refused;

/// A resolver that keeps only public addresses (`Egress::PublicOnly`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}
