//! Which webhook addresses are public: the pure half of gcrun's egress
//! policy (no I/O), shared by the door (a request naming an internal
//! address literal is refused with a violation) and the worker (which also
//! checks the addresses a name resolves to; see gcrun-worker's `egress`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether gcrun may send a webhook to `ip` by default.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

pub fn is_public_v4(a: Ipv4Addr) -> bool {
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

pub fn is_public_v6(a: Ipv6Addr) -> bool {
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
        || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) // local-use NAT64 (64:ff9b:1::/48, RFC 8215)
        || (s[0] == 0x2001 && s[1] == 0) // Teredo (2001::/32): a tunnel to whatever IPv4 it embeds
        || (s[0] == 0x2001 && (s[1] & 0xfff0) == 0x0010) // ORCHID (2001:10::/28, 2001:20::/28 below)
        || (s[0] == 0x2001 && (s[1] & 0xfff0) == 0x0020)
        || s[0] == 0x0100 && s[1..4] == [0, 0, 0] // discard-only (100::/64)
        || (s[0] & 0xfe00) == 0xfc00 // unique local (fc00::/7), e.g. fd00:ec2::254
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[..6] == [0, 0, 0, 0, 0, 0]; // IPv4-compatible (deprecated), ::/96
    !refused
}
