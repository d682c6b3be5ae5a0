//! The one client IP (issue 12, scope 4): every rate limit, the sign-in
//! throttle and the card-consent record find the client through
//! [`from_parts`] (requests) or [`resolve`] (the rule itself).
//!
//! - `TRUST_PROXY_HEADERS` off (the default): the TCP peer. Anyone can
//!   write `X-Forwarded-For`, so it is ignored.
//! - On: each proxy appends the address it received the request from, so
//!   only the right end of the header is ours; the left end is whatever the
//!   client sent. Walking from the right, the client is the first address
//!   that is not one of our proxies (`TRUSTED_PROXIES`). With no list, the
//!   TCP peer is taken to be our one proxy and the rightmost address is the
//!   client. With a list, a peer that is not listed did not come through
//!   our proxies: the peer is the client and the header is ignored.
//! - An entry that does not parse stops the walk: the client is then the
//!   nearest address already passed (at worst the peer). At most
//!   [`MAX_FORWARDED_HOPS`] entries are read.
//!
//! Limits key on [`limit_key`]: an IPv4 address as it is, an IPv6 address
//! by its /64 (one client is usually given a whole /64). The consent record
//! stores the full address.

use crate::server::config::proxies::ProxySettings;
use crate::server::config::Config;
use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use std::net::{IpAddr, SocketAddr};

/// Most `X-Forwarded-For` entries read, from the right.
pub const MAX_FORWARDED_HOPS: usize = 32;

/// The client of the request `parts`: the TCP peer (`ConnectInfo`, present
/// when the server runs with
/// `into_make_service_with_connect_info::<SocketAddr>()`) and, under
/// `TRUST_PROXY_HEADERS`, its `X-Forwarded-For` header, as [`resolve`]
/// reads them. `None` only without a peer and without a usable header.
pub fn from_parts(parts: &Parts, config: &Config) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    from_headers(&parts.headers, peer, &config.proxies)
}

/// [`resolve`] over every `X-Forwarded-For` field of `headers` (several
/// fields read as one comma-separated list, in order); a field that is not
/// visible ASCII counts as an unparsable entry.
pub fn from_headers(
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    proxies: &ProxySettings,
) -> Option<IpAddr> {
    if !proxies.trust_headers {
        return peer.map(|ip| ip.to_canonical());
    }
    let fields: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|value| value.to_str().unwrap_or("\u{0}"))
        .collect();
    resolve(peer, &fields, proxies)
}

/// The client, given the TCP `peer` and the `X-Forwarded-For` fields in
/// the order received (see the module's rules). The answer is always the
/// peer or an address written in a field, IPv4-mapped IPv6 as IPv4.
pub fn resolve(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    proxies: &ProxySettings,
) -> Option<IpAddr> {
    let peer = peer.map(|ip| ip.to_canonical());
    if !proxies.trust_headers {
        return peer;
    }
    if let Some(ip) = peer {
        if !proxies.trusted.is_empty() && !proxies.is_trusted(ip) {
            return Some(ip);
        }
    }
    let mut nearest = peer;
    let hops = forwarded_for
        .iter()
        .rev()
        .flat_map(|field| field.rsplit(','))
        .take(MAX_FORWARDED_HOPS);
    for hop in hops {
        let Some(ip) = parse_hop(hop) else {
            break;
        };
        if !proxies.is_trusted(ip) {
            return Some(ip);
        }
        nearest = Some(ip);
    }
    nearest
}

/// One entry: an IP, optionally with a port (`203.0.113.7:4711`,
/// `[2001:db8::1]:443`), surrounding spaces ignored.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if hop.is_empty() || hop.len() > 64 {
        return None;
    }
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
}

/// What limits count against for `ip`: IPv4 (also IPv4-mapped IPv6) as
/// it is, IPv6 by its /64 network (`2001:db8:1:2::/64`).
pub fn limit_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// A bucket name for `ip` under `prefix` (e.g. `signup:ip`):
/// `<prefix>:<limit_key(ip)>`.
pub fn ip_bucket(prefix: &str, ip: IpAddr) -> String {
    format!("{prefix}:{}", limit_key(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusting(list: &str) -> ProxySettings {
        ProxySettings::parse(true, Some(list)).unwrap()
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4() {
        let a = ip("2001:db8:1:2:aaaa::1");
        let b = ip("2001:db8:1:2:bbbb::2");
        let c = ip("2001:db8:1:3::1");
        assert_eq!(ip_bucket("s", a), ip_bucket("s", b));
        assert_ne!(ip_bucket("s", a), ip_bucket("s", c));
        assert_eq!(ip_bucket("s", a), "s:2001:db8:1:2::/64");
        assert_eq!(ip_bucket("s", ip("::ffff:203.0.113.7")), "s:203.0.113.7");
    }

    #[test]
    fn without_trust_the_header_is_ignored() {
        let peer = Some(ip("192.0.2.1"));
        assert_eq!(
            resolve(peer, &["203.0.113.7"], &ProxySettings::default()),
            peer
        );
    }

    #[test]
    fn with_trust_and_no_list_the_rightmost_address_is_the_client() {
        let proxies = trusting("");
        let peer = Some(ip("10.0.0.2"));
        // The client wrote the left entry; our proxy appended the right one.
        assert_eq!(
            resolve(peer, &["198.51.100.66, 203.0.113.7"], &proxies),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            resolve(peer, &["198.51.100.66", "203.0.113.7:5555"], &proxies),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(resolve(peer, &[], &proxies), peer);
        assert_eq!(resolve(peer, &["203.0.113.7, junk"], &proxies), peer);
        assert_eq!(
            resolve(None, &["[2001:db8::5]:443"], &proxies),
            Some(ip("2001:db8::5"))
        );
    }

    #[test]
    fn listed_proxies_are_skipped_from_the_right() {
        let proxies = trusting("10.0.0.0/8, 192.0.2.10");
        let peer = Some(ip("10.0.0.2"));
        assert_eq!(
            resolve(
                peer,
                &["1.1.1.1, 203.0.113.7, 192.0.2.10, 10.9.9.9"],
                &proxies
            ),
            Some(ip("203.0.113.7"))
        );
        // Only proxies (or junk before a client): the nearest proxy passed.
        assert_eq!(
            resolve(peer, &["junk, 192.0.2.10"], &proxies),
            Some(ip("192.0.2.10"))
        );
        // A peer that is not one of ours came straight in: header ignored.
        let stranger = Some(ip("198.51.100.1"));
        assert_eq!(resolve(stranger, &["203.0.113.7"], &proxies), stranger);
    }

    fn in_header(addr: IpAddr, fields: &[String]) -> bool {
        fields
            .iter()
            .flat_map(|f| f.split(','))
            .filter_map(parse_hop)
            .any(|hop| hop == addr)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Garbage never panics, and the answer is the peer or an address
        /// written in the header.
        #[test]
        fn any_header_gives_the_peer_or_one_of_its_addresses(
            fields in proptest::collection::vec(
                prop_oneof![
                    ".{0,80}",
                    "([0-9a-f:., \\[\\]]{0,40})",
                    proptest::collection::vec(
                        prop_oneof![
                            any::<std::net::Ipv4Addr>().prop_map(|a| a.to_string()),
                            any::<std::net::Ipv6Addr>().prop_map(|a| a.to_string()),
                            "[ -~]{0,12}",
                        ],
                        0..40,
                    ).prop_map(|hops| hops.join(",")),
                ],
                0..4,
            ),
            peer in proptest::option::of(any::<IpAddr>()),
            list in prop_oneof![Just(""), Just("10.0.0.0/8"), Just("0.0.0.0/0, ::/0")],
        ) {
            let proxies = trusting(list);
            let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
            let got = resolve(peer, &refs, &proxies);
            match got {
                None => prop_assert!(peer.is_none()),
                Some(addr) => prop_assert!(
                    peer.map(|p| p.to_canonical()) == Some(addr) || in_header(addr, &fields),
                    "{addr} is neither the peer nor in {fields:?}"
                ),
            }
        }

        /// Whatever the client puts on the left, the address our proxy
        /// appended decides.
        #[test]
        fn a_spoofed_left_end_cannot_choose_the_client(
            spoofed in "[ -~]{0,200}",
            client in any::<std::net::Ipv4Addr>(),
        ) {
            let proxies = trusting("");
            let header = format!("{spoofed},{client}");
            prop_assert_eq!(
                resolve(Some(ip("10.0.0.2")), &[header.as_str()], &proxies),
                Some(IpAddr::V4(client))
            );
        }
    }
}
