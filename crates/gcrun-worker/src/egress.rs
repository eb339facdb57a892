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

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

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

/// Whether gcrun may send a webhook to `ip` by default.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(a: Ipv4Addr) -> bool {
    let [o1, o2, o3, _] = a.octets();
    let refused = a.is_unspecified()
        || a.is_loopback()
        || a.is_private()
        || a.is_link_local()
        || a.is_broadcast()
        || a.is_documentation()
        || a.is_multicast()
        || o1 == 0 // "this network"
        || (o1 == 100 && (64..128).contains(&o2)) // shared address space (CGNAT)
        || (o1 == 192 && o2 == 0 && o3 == 0) // IETF protocol assignments
        || (o1 == 198 && (o2 == 18 || o2 == 19)) // benchmarking
        || o1 >= 240; // reserved
    !refused
}

fn is_public_v6(a: Ipv6Addr) -> bool {
    if let Some(v4) = a.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = a.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    if s[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    }
    let refused = a.is_unspecified()
        || a.is_loopback()
        || a.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local (fc00::/7), e.g. fd00:ec2::254
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[..6] == [0, 0, 0, 0, 0, 0]; // IPv4-compatible (deprecated), ::/96
    !refused
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
