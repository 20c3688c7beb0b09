//! Which addresses a remote MCP server URL may point at (server-side request forgery guard).
//! The operator checks the literal host of an MCPServerEntry's `remoteURL` at admission; the
//! vMCP checks every resolved address again at connect time with the same [`classify`], so the
//! two can never disagree. Pure functions, no I/O: a host name is not resolved here.
//!
//! Blocked always: loopback (127.0.0.0/8, `::1`, the name `localhost`), link-local
//! (169.254.0.0/16, `fe80::/10`), cloud metadata (169.254.169.254, AWS's `fd00:ec2::254`,
//! Alibaba's 100.100.100.200) and unspecified (0.0.0.0/8, `::`, which Linux routes to the local
//! host). Blocked unless `allow_private`: 10/8, 172.16/12, 192.168/16, `fc00::/7` and the
//! deprecated site-local `fec0::/10`. IPv6 forms that carry an IPv4 address (mapped
//! `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`) are judged by that address.
//! Other IPv4 spellings (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`) need no work here: the
//! `url` crate parses http(s) hosts as WHATWG does and hands back the canonical address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Why an address must not be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// 127.0.0.0/8, `::1`, `localhost`.
    Loopback,
    /// 169.254.0.0/16, `fe80::/10`.
    LinkLocal,
    /// A cloud instance-metadata endpoint.
    Metadata,
    /// 0.0.0.0/8, `::`.
    Unspecified,
    /// 10/8, 172.16/12, 192.168/16, `fc00::/7`, `fec0::/10`; `allow_private` lifts it.
    Private,
}

impl Blocked {
    /// True for the class `allow_private` lifts.
    pub fn is_private_range(self) -> bool {
        self == Blocked::Private
    }
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Blocked::Loopback => "a loopback address (127.0.0.0/8, ::1)",
            Blocked::LinkLocal => "a link-local address (169.254.0.0/16, fe80::/10)",
            Blocked::Metadata => "a cloud metadata endpoint",
            Blocked::Unspecified => "an unspecified address (0.0.0.0/8, ::)",
            Blocked::Private => "a private address (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7)",
        })
    }
}

/// Cloud metadata endpoints: AWS/GCP/Azure, Alibaba Cloud.
const METADATA_V4: [Ipv4Addr; 2] = [Ipv4Addr::new(169, 254, 169, 254), Ipv4Addr::new(100, 100, 100, 200)];
/// AWS's IPv6 metadata endpoint; inside `fc00::/7`, so it must be caught before the private rule.
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// The class of `ip` when it must not be reached, `None` when it may.
pub fn classify(ip: IpAddr) -> Option<Blocked> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// `Ok` when `ip` may be reached; `allow_private` lifts only [`Blocked::Private`].
pub fn check_ip(ip: IpAddr, allow_private: bool) -> Result<(), Blocked> {
    match classify(ip) {
        None => Ok(()),
        Some(b) if b.is_private_range() && allow_private => Ok(()),
        Some(b) => Err(b),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Blocked> {
    let [a, b, ..] = ip.octets();
    if METADATA_V4.contains(&ip) {
        Some(Blocked::Metadata)
    } else if a == 0 {
        Some(Blocked::Unspecified)
    } else if a == 127 {
        Some(Blocked::Loopback)
    } else if a == 169 && b == 254 {
        Some(Blocked::LinkLocal)
    } else if a == 10 || (a == 172 && (16..=31).contains(&b)) || (a == 192 && b == 168) {
        Some(Blocked::Private)
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<Blocked> {
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let first = ip.segments()[0];
    if ip.is_unspecified() {
        Some(Blocked::Unspecified)
    } else if ip.is_loopback() {
        Some(Blocked::Loopback)
    } else if ip == METADATA_V6 {
        Some(Blocked::Metadata)
    } else if first & 0xffc0 == 0xfe80 {
        Some(Blocked::LinkLocal)
    } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
        Some(Blocked::Private)
    } else {
        None
    }
}

/// The IPv4 address an IPv6 address stands for: mapped `::ffff:0:0/96`, compatible `::/96`
/// (but `::` and `::1` are IPv6's own), NAT64 `64:ff9b::/96`.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    let compatible = s[..6] == [0; 6] && !ip.is_unspecified() && !ip.is_loopback();
    let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    (compatible || nat64).then_some(low)
}

/// What the host of an accepted URL is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteHost {
    /// A literal address, already checked.
    Address(IpAddr),
    /// A host name: its addresses are known only at connect time, where they must be checked.
    Name(String),
}

/// Why a URL is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SsrfError {
    /// Not a URL.
    #[error("not a valid URL: {0}")]
    Parse(#[from] url::ParseError),
    /// Not http or https.
    #[error("scheme {0} is not allowed; use http or https")]
    Scheme(String),
    /// No host part.
    #[error("the URL has no host")]
    NoHost,
    /// The host is, or always resolves to, a blocked address.
    #[error("host {host} is {class}")]
    Blocked {
        /// The host as the URL parser canonicalised it.
        host: String,
        /// Why it is blocked.
        class: Blocked,
    },
}

/// Parses `raw` and checks its host: a literal address with [`check_ip`], the name `localhost`
/// (and `*.localhost`, RFC 6761) as loopback. Any other name is accepted as [`RemoteHost::Name`].
pub fn check_url(raw: &str, allow_private: bool) -> Result<RemoteHost, SsrfError> {
    let url = Url::parse(raw.trim())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SsrfError::Scheme(url.scheme().to_string()));
    }
    let (ip, shown) = match url.host().ok_or(SsrfError::NoHost)? {
        Host::Ipv4(v4) => (IpAddr::V4(v4), v4.to_string()),
        Host::Ipv6(v6) => (IpAddr::V6(v6), v6.to_string()),
        Host::Domain(name) => {
            let bare = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
            if bare == "localhost" || bare.ends_with(".localhost") {
                return Err(SsrfError::Blocked { host: name.to_string(), class: Blocked::Loopback });
            }
            return Ok(RemoteHost::Name(name.to_string()));
        }
    };
    check_ip(ip, allow_private).map_err(|class| SsrfError::Blocked { host: shown, class })?;
    Ok(RemoteHost::Address(ip))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    use Blocked::*;

    /// (address, class) for every range and its edges.
    const ADDRESSES: &[(&str, Option<Blocked>)] = &[
        ("127.0.0.1", Some(Loopback)),
        ("127.255.255.254", Some(Loopback)),
        ("126.255.255.255", None),
        ("128.0.0.1", None),
        ("::1", Some(Loopback)),
        ("169.254.169.254", Some(Metadata)),
        ("100.100.100.200", Some(Metadata)),
        ("fd00:ec2::254", Some(Metadata)),
        ("169.254.0.1", Some(LinkLocal)),
        ("169.254.170.2", Some(LinkLocal)),
        ("169.255.0.1", None),
        ("fe80::1", Some(LinkLocal)),
        ("febf:ffff::1", Some(LinkLocal)),
        ("0.0.0.0", Some(Unspecified)),
        ("0.1.2.3", Some(Unspecified)),
        ("::", Some(Unspecified)),
        ("10.0.0.1", Some(Private)),
        ("10.255.255.255", Some(Private)),
        ("11.0.0.1", None),
        ("172.16.0.1", Some(Private)),
        ("172.31.255.255", Some(Private)),
        ("172.15.255.255", None),
        ("172.32.0.1", None),
        ("192.168.1.1", Some(Private)),
        ("192.169.0.1", None),
        ("fc00::1", Some(Private)),
        ("fd12:3456::1", Some(Private)),
        ("fec0::1", Some(Private)),
        ("fe00::1", None),
        ("::ffff:127.0.0.1", Some(Loopback)),
        ("::ffff:169.254.169.254", Some(Metadata)),
        ("::ffff:10.0.0.1", Some(Private)),
        ("::ffff:8.8.8.8", None),
        ("::127.0.0.1", Some(Loopback)),
        ("64:ff9b::a9fe:a9fe", Some(Metadata)),
        ("64:ff9b::808:808", None),
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("2606:4700::1111", None),
    ];

    #[test]
    fn every_address_falls_in_its_class() {
        for (text, want) in ADDRESSES {
            let ip: IpAddr = text.parse().unwrap();
            assert_eq!(classify(ip), *want, "{text}");
        }
    }

    #[test]
    fn allow_private_lifts_the_private_ranges_only() {
        for (text, class) in ADDRESSES {
            let ip: IpAddr = text.parse().unwrap();
            let lifted = check_ip(ip, true);
            match class {
                None | Some(Private) => assert_eq!(lifted, Ok(()), "{text}"),
                Some(c) => assert_eq!(lifted, Err(*c), "{text} stays blocked"),
            }
            assert_eq!(check_ip(ip, false).err(), *class, "{text}");
        }
    }

    /// Every spelling of one address is judged as that address: the `url` crate canonicalises
    /// http(s) hosts (decimal, octal, hex, short forms; IPv6 in brackets).
    const URLS: &[(&str, Option<Blocked>)] = &[
        ("http://127.0.0.1/mcp", Some(Loopback)),
        ("http://2130706433/mcp", Some(Loopback)),
        ("http://0177.0.0.1/mcp", Some(Loopback)),
        ("http://0x7f.1/mcp", Some(Loopback)),
        ("http://0x7f000001/", Some(Loopback)),
        ("http://127.1/", Some(Loopback)),
        ("http://127.0.1/", Some(Loopback)),
        ("https://[::1]:8443/mcp", Some(Loopback)),
        ("http://[::ffff:127.0.0.1]/", Some(Loopback)),
        ("http://[::ffff:7f00:1]/", Some(Loopback)),
        ("http://[0:0:0:0:0:ffff:127.0.0.1]/", Some(Loopback)),
        ("http://localhost:8080/mcp", Some(Loopback)),
        ("http://LOCALHOST./", Some(Loopback)),
        ("http://api.localhost/", Some(Loopback)),
        ("http://169.254.169.254/latest/meta-data/", Some(Metadata)),
        ("http://2852039166/", Some(Metadata)),
        ("http://0xa9.0xfe.0xa9.0xfe/", Some(Metadata)),
        ("http://0251.0376.0251.0376/", Some(Metadata)),
        ("http://[::ffff:a9fe:a9fe]/", Some(Metadata)),
        ("http://[fd00:ec2::254]/", Some(Metadata)),
        ("http://169.254.1.1/", Some(LinkLocal)),
        ("http://[fe80::1]/", Some(LinkLocal)),
        ("http://0.0.0.0:8080/", Some(Unspecified)),
        ("http://0/", Some(Unspecified)),
        ("http://[::]/", Some(Unspecified)),
        ("http://10.1.2.3/", Some(Private)),
        ("http://167772161/", Some(Private)),
        ("http://012.1/", Some(Private)),
        ("https://172.20.0.5/mcp", Some(Private)),
        ("https://192.168.0.10/mcp", Some(Private)),
        ("https://[fd00::5]/mcp", Some(Private)),
        ("https://8.8.8.8/mcp", None),
        ("https://134744072/mcp", None),
        ("https://[2606:4700::1111]/mcp", None),
    ];

    #[test]
    fn every_spelling_of_an_address_is_judged_as_that_address() {
        for (raw, class) in URLS {
            let got = check_url(raw, false);
            match class {
                None => assert!(matches!(got, Ok(RemoteHost::Address(_))), "{raw}: {got:?}"),
                Some(c) => match got {
                    Err(SsrfError::Blocked { class, .. }) => assert_eq!(class, *c, "{raw}"),
                    other => panic!("{raw}: {other:?}"),
                },
            }
            let lifted = check_url(raw, true);
            assert_eq!(lifted.is_ok(), matches!(class, None | Some(Private)), "{raw} with allow_private: {lifted:?}");
        }
    }

    #[test]
    fn a_blocked_host_is_named_in_its_canonical_form() {
        let err = check_url("http://0x7f.1/mcp", false).unwrap_err();
        assert_eq!(err.to_string(), "host 127.0.0.1 is a loopback address (127.0.0.0/8, ::1)");
    }

    #[test]
    fn host_names_are_left_to_connect_time() {
        assert_eq!(check_url("https://mcp.example.com/mcp", false), Ok(RemoteHost::Name("mcp.example.com".into())));
        // Looks numeric but is a name (the last label is not a number).
        assert_eq!(check_url("http://127.0.0.1.nip.io/", false), Ok(RemoteHost::Name("127.0.0.1.nip.io".into())));
    }

    #[test]
    fn non_http_urls_and_garbage_are_refused() {
        assert!(matches!(check_url("ftp://example.com/", false), Err(SsrfError::Scheme(s)) if s == "ftp"));
        assert!(matches!(check_url("file:///etc/passwd", false), Err(SsrfError::Scheme(_))));
        assert!(matches!(check_url("not a url", false), Err(SsrfError::Parse(_))));
        assert!(matches!(check_url("http://", false), Err(SsrfError::Parse(_))));
        // WHATWG refuses an IPv4-looking host whose parts overflow rather than reading it as a name.
        assert!(matches!(check_url("http://256.256.256.256/", false), Err(SsrfError::Parse(_))));
    }
}
