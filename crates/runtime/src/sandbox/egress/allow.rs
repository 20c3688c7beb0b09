//! The profile's `allow_host` / `allow_port` lists as a matcher: which `host:port` a sandboxed
//! server may ask the egress proxy for, and which resolved addresses the proxy may then dial.
//!
//! Semantics follow ToolHive's Squid ACLs: `api.example.com` matches that name only;
//! `.example.com` (or `*.example.com`) matches `example.com` and every name below it; names
//! compare case-insensitively with a trailing dot ignored. An IP literal matches only when the
//! same address is listed. When both lists are given, host AND port must match; an empty list
//! leaves that dimension open (`allow_port: [443]` alone allows any host on 443).

use std::net::IpAddr;

use apiary_config::OutboundPermissions;

/// One `allow_host` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostRule {
    /// Exactly this (normalised) name.
    Exact(String),
    /// This name and any name ending in `.` + it.
    Domain(String),
    /// This address, written literally.
    Ip(IpAddr),
}

/// Why a destination is refused (the proxy sends this text back with its 403).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The host name or address is not on `allow_host`.
    #[error("host {0} is not on the allow-list")]
    Host(String),
    /// The port is not on `allow_port`.
    #[error("port {0} is not on the allow-list")]
    Port(u16),
    /// The host is not a usable name.
    #[error("invalid host name")]
    BadHost,
    /// Every address the name resolves to is loopback, link-local or unspecified, and that
    /// address is not listed literally.
    #[error("host {0} resolves to a local address that is not listed literally")]
    LocalAddress(String),
}

/// The allow-list of one profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    hosts: Vec<HostRule>,
    ports: Vec<u16>,
}

impl AllowList {
    /// The lists of a profile's `network.outbound` (malformed host entries are dropped: they
    /// could never match, and dropping narrows rather than widens).
    pub fn from_outbound(out: &OutboundPermissions) -> Self {
        AllowList {
            hosts: out.allow_host.iter().filter_map(|h| parse_rule(h)).collect(),
            ports: out.allow_port.clone(),
        }
    }

    /// Whether `host:port` may be asked for. `host` is what the client wrote (a name, an IPv4
    /// literal, or an IPv6 literal with or without brackets).
    pub fn check(&self, host: &str, port: u16) -> Result<(), Refusal> {
        if self.hosts.is_empty() && self.ports.is_empty() {
            return Err(Refusal::Host(host.to_owned()));
        }
        if !self.ports.is_empty() && !self.ports.contains(&port) {
            return Err(Refusal::Port(port));
        }
        if self.hosts.is_empty() {
            return Ok(());
        }
        let allowed = match parse_ip(host) {
            Some(ip) => self.hosts.contains(&HostRule::Ip(ip)),
            None => {
                let name = normalise(host).ok_or(Refusal::BadHost)?;
                self.hosts.iter().any(|r| match r {
                    HostRule::Exact(n) => *n == name,
                    HostRule::Domain(d) => {
                        name == *d || name.strip_suffix(d.as_str()).is_some_and(|p| p.ends_with('.'))
                    }
                    HostRule::Ip(_) => false,
                })
            }
        };
        if allowed { Ok(()) } else { Err(Refusal::Host(host.to_owned())) }
    }

    /// Whether the proxy may dial `ip` once a permitted name resolved to it: anything but
    /// loopback, link-local, unspecified and multicast addresses, which are allowed only when
    /// listed literally (so a name whose DNS points at 127.0.0.1 cannot reach host services).
    pub fn may_dial(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        !is_local(ip) || self.hosts.contains(&HostRule::Ip(ip))
    }
}

/// Loopback, link-local (incl. cloud metadata 169.254.169.254), unspecified or multicast.
fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || v6.is_multicast() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// `1.2.3.4`, `::1` or `[::1]`, as the canonical address (IPv4-mapped IPv6 becomes IPv4).
fn parse_ip(host: &str) -> Option<IpAddr> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    bare.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// Lower case, one trailing dot removed; `None` unless it is a plausible DNS name.
fn normalise(host: &str) -> Option<String> {
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then_some(name)
}

fn parse_rule(entry: &str) -> Option<HostRule> {
    let entry = entry.trim();
    if let Some(ip) = parse_ip(entry) {
        return Some(HostRule::Ip(ip));
    }
    match entry.strip_prefix("*.").or_else(|| entry.strip_prefix('.')) {
        Some(domain) => normalise(domain).map(HostRule::Domain),
        None => normalise(entry).map(HostRule::Exact),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn list(hosts: &[&str], ports: &[u16]) -> AllowList {
        AllowList::from_outbound(&OutboundPermissions {
            insecure_allow_all: false,
            allow_host: hosts.iter().map(|h| (*h).to_owned()).collect(),
            allow_port: ports.to_vec(),
        })
    }

    #[test]
    fn host_matching_table() {
        let l = list(&["api.example.com", ".example.test", "*.wild.test", "10.0.0.1", "::1"], &[]);
        let rows: &[(&str, bool)] = &[
            ("api.example.com", true),
            ("API.Example.COM.", true),
            ("x.api.example.com", false),
            ("example.com", false),
            ("a.example.test", true),
            ("a.b.example.test", true),
            ("example.test", true),
            ("example.test.evil", false),
            ("badexample.test", false),
            ("evil-example.test", false),
            ("x.wild.test", true),
            ("wild.test", true),
            ("10.0.0.1", true),
            ("10.0.0.2", false),
            ("[::1]", true),
            ("::ffff:10.0.0.1", true),
            ("127.0.0.1", false),
            ("", false),
            ("a..example.test", false),
            ("a/b.example.test", false),
        ];
        for (host, want) in rows {
            assert_eq!(l.check(host, 443).is_ok(), *want, "host {host:?}");
        }
    }

    #[test]
    fn a_name_rule_does_not_match_an_ip_and_an_ip_rule_does_not_match_a_name() {
        let l = list(&["localhost"], &[]);
        assert!(l.check("localhost", 80).is_ok());
        assert_eq!(l.check("127.0.0.1", 80), Err(Refusal::Host("127.0.0.1".into())));
        let l = list(&["127.0.0.1"], &[]);
        assert!(l.check("localhost", 80).is_err());
    }

    #[test]
    fn host_and_port_both_must_match_and_an_empty_list_is_open() {
        let l = list(&["a.test"], &[443]);
        assert!(l.check("a.test", 443).is_ok());
        assert_eq!(l.check("a.test", 80), Err(Refusal::Port(80)));
        assert!(matches!(l.check("b.test", 443), Err(Refusal::Host(_))));
        assert!(list(&[], &[443]).check("anything.test", 443).is_ok());
        assert!(list(&[], &[443]).check("anything.test", 80).is_err());
        assert!(list(&["a.test"], &[]).check("a.test", 8080).is_ok());
        assert!(list(&[], &[]).check("a.test", 443).is_err());
    }

    #[test]
    fn local_addresses_are_dialled_only_when_listed_literally() {
        let l = list(&["evil.example"], &[]);
        for ip in ["127.0.0.1", "127.1.2.3", "::1", "169.254.169.254", "fe80::1", "0.0.0.0", "::", "::ffff:127.0.0.1"] {
            assert!(!l.may_dial(ip.parse().unwrap()), "{ip}");
        }
        assert!(l.may_dial("93.184.216.34".parse().unwrap()));
        assert!(l.may_dial("10.1.2.3".parse().unwrap()));
        let l = list(&["127.0.0.1"], &[]);
        assert!(l.may_dial("127.0.0.1".parse().unwrap()));
        assert!(!l.may_dial("127.0.0.2".parse().unwrap()));
    }
}
