//! The client address of a handshake (docs/protocol.md, "Authentication"): the TCP peer, or `X-Real-IP` /
//! the right-most `X-Forwarded-For` entry only when the peer is a trusted proxy, and the key
//! per-address limits count it under.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// Whether `peer` is one of the configured trusted proxies.
pub fn is_trusted(peer: IpAddr, trusted: &[IpNet]) -> bool {
    let peer = canonical(peer);
    trusted.iter().any(|net| net.contains(&peer))
}

/// The address a connection is accounted to. `None` when the peer is unknown (no connect info).
pub fn client_addr(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = canonical(peer?.ip());
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let real_ip = headers
        .get("x-real-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_ip);
    let forwarded = || {
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .rfind(|s| !s.trim().is_empty())
            .and_then(parse_ip)
    };
    Some(real_ip.or_else(forwarded).unwrap_or(peer))
}

/// The key per-address limits count `addr` under: an IPv4 address itself, an IPv6 address's /64
/// network. One IPv6 host is usually given a whole /64 and picks addresses in it at will, so
/// keying by full address would hand it 2^64 budgets.
pub fn limit_key(addr: IpAddr) -> IpAddr {
    match canonical(addr) {
        IpAddr::V6(v6) => {
            let network = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(Ipv6Addr::from(network))
        }
        v4 => v4,
    }
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(canonical)
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::HeaderValue;

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-real-ip", "5.6.7.8")]);
        assert_eq!(
            client_addr(peer("9.9.9.9:5000"), &h, &nets(&["10.0.0.0/8"])),
            Some("9.9.9.9".parse().unwrap())
        );
        assert_eq!(
            client_addr(peer("9.9.9.9:5000"), &h, &[]),
            Some("9.9.9.9".parse().unwrap())
        );
    }

    #[test]
    fn trusted_peer_real_ip_wins() {
        let h = headers(&[("x-forwarded-for", "1.2.3.4"), ("x-real-ip", "5.6.7.8")]);
        assert_eq!(
            client_addr(peer("10.1.2.3:80"), &h, &nets(&["10.0.0.0/8"])),
            Some("5.6.7.8".parse().unwrap())
        );
    }

    #[test]
    fn trusted_peer_rightmost_forwarded_for() {
        // A client spoofs the left entry; the proxy appends the real address on the right.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 7.7.7.7")]);
        assert_eq!(
            client_addr(peer("10.1.2.3:80"), &h, &nets(&["10.0.0.0/8"])),
            Some("7.7.7.7".parse().unwrap())
        );
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "8.8.8.8"),
        ]);
        assert_eq!(
            client_addr(peer("10.1.2.3:80"), &h, &nets(&["10.0.0.0/8"])),
            Some("8.8.8.8".parse().unwrap())
        );
    }

    #[test]
    fn trusted_peer_garbage_header_falls_back_to_peer() {
        let h = headers(&[("x-forwarded-for", "not-an-ip"), ("x-real-ip", "")]);
        assert_eq!(
            client_addr(peer("10.1.2.3:80"), &h, &nets(&["10.1.2.3/32"])),
            Some("10.1.2.3".parse().unwrap())
        );
        assert_eq!(
            client_addr(
                peer("10.1.2.3:80"),
                &HeaderMap::new(),
                &nets(&["10.0.0.0/8"])
            ),
            Some("10.1.2.3".parse().unwrap())
        );
    }

    #[test]
    fn mapped_ipv6_peer_matches_ipv4_proxy() {
        let h = headers(&[("x-real-ip", "2001:db8::1")]);
        assert_eq!(
            client_addr(peer("[::ffff:127.0.0.1]:80"), &h, &nets(&["127.0.0.1/32"])),
            Some("2001:db8::1".parse().unwrap())
        );
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_network() {
        let key = |s: &str| limit_key(s.parse().unwrap());
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_eq!(
            key("2001:db8:1:2:abcd::9"),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        // IPv4, mapped or not, keeps its full address.
        assert_eq!(key("10.1.2.3"), "10.1.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(
            key("::ffff:10.1.2.3"),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
        assert_ne!(key("10.1.2.3"), key("10.1.2.4"));
    }

    #[test]
    fn no_peer_no_address() {
        assert_eq!(client_addr(None, &HeaderMap::new(), &[]), None);
    }
}
