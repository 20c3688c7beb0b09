//! How a [`RawSession`](super::RawSession) may reach its server beyond the defaults: extra TLS
//! roots (a backend's CA bundle) and an address guard. With a guard, the host is resolved
//! here, EVERY address is checked, and the HTTP client is pinned to exactly those addresses
//! and follows no redirect, so DNS cannot hand the connection a different (blocked) address
//! between the check and the connect (server-side request forgery).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Certificate, Client, ClientBuilder, Url};

use super::error::ClientError;
use super::http::connection_error;

/// Most addresses one host name may resolve to before it is refused.
const MAX_ADDRESSES: usize = 64;

/// Decides whether one resolved address may be connected to; `Err` says why not.
#[derive(Clone)]
pub struct AddressGuard(Arc<dyn Fn(IpAddr) -> Result<(), String> + Send + Sync>);

impl AddressGuard {
    pub fn new(check: impl Fn(IpAddr) -> Result<(), String> + Send + Sync + 'static) -> AddressGuard {
        AddressGuard(Arc::new(check))
    }
}

impl std::fmt::Debug for AddressGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddressGuard")
    }
}

/// Extra ways of reaching a server: both unset is the plain client.
#[derive(Clone, Default)]
pub struct Reach {
    /// PEM certificates trusted besides the built-in roots.
    pub ca_bundle_pem: Option<Arc<[u8]>>,
    /// Checked against every resolved address before connecting.
    pub guard: Option<AddressGuard>,
}

impl std::fmt::Debug for Reach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reach")
            .field("ca_bundle_bytes", &self.ca_bundle_pem.as_ref().map(|p| p.len()))
            .field("guard", &self.guard.is_some())
            .finish()
    }
}

/// Parses a PEM bundle; `Ok(n)` is the number of certificates in it (at least one).
pub fn check_ca_bundle(pem: &[u8]) -> Result<usize, ClientError> {
    certificates(pem).map(|c| c.len())
}

fn certificates(pem: &[u8]) -> Result<Vec<Certificate>, ClientError> {
    let certs = Certificate::from_pem_bundle(pem).map_err(|e| ClientError::CaBundle(e.to_string()))?;
    if certs.is_empty() {
        return Err(ClientError::CaBundle("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// The HTTP client for `url` under `reach`: resolves and checks the host first when guarded.
pub(crate) async fn client(url: &Url, reach: &Reach, timeout: Duration) -> Result<Client, ClientError> {
    let mut builder: ClientBuilder =
        Client::builder().connect_timeout(timeout).user_agent(concat!("apiary/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = &reach.ca_bundle_pem {
        for cert in certificates(pem)? {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder = match &reach.guard {
        None => builder.redirect(reqwest::redirect::Policy::limited(5)),
        Some(guard) => {
            // A redirect or an HTTP proxy would connect somewhere not checked here.
            let builder = builder.redirect(reqwest::redirect::Policy::none()).no_proxy();
            match pinned(url, guard, timeout).await? {
                Some((host, addrs)) => builder.resolve_to_addrs(&host, &addrs),
                None => builder,
            }
        }
    };
    builder.build().map_err(|e| connection_error("building the HTTP client", e))
}

/// Checks the host of `url`: a literal address directly (nothing to pin), a name by resolving
/// it and checking every address, returned for pinning.
async fn pinned(
    url: &Url,
    guard: &AddressGuard,
    timeout: Duration,
) -> Result<Option<(String, Vec<SocketAddr>)>, ClientError> {
    let refuse = |host: &str, reason: String| ClientError::Refused { host: host.to_owned(), reason };
    let port = url.port_or_known_default().unwrap_or(80);
    let Some(host) = url.host_str() else {
        return Err(ClientError::InvalidUrl { url: url.to_string(), reason: "no host".into() });
    };
    // The URL parser has canonicalised a literal address (IPv6 in brackets).
    let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return (guard.0)(ip).map(|()| None).map_err(|r| refuse(literal, r));
    }
    let name = host;
    let looked_up = tokio::time::timeout(timeout, tokio::net::lookup_host((name, port)))
        .await
        .map_err(|_| ClientError::Timeout { after: timeout, waiting_for: format!("resolving {name}") })?
        .map_err(|e| refuse(name, format!("it does not resolve: {e}")))?;
    let addrs: Vec<SocketAddr> = looked_up.take(MAX_ADDRESSES + 1).collect();
    if addrs.is_empty() {
        return Err(refuse(name, "it resolves to no address".into()));
    }
    if addrs.len() > MAX_ADDRESSES {
        return Err(refuse(name, format!("it resolves to more than {MAX_ADDRESSES} addresses")));
    }
    for a in &addrs {
        (guard.0)(a.ip()).map_err(|r| refuse(name, format!("it resolves to {}, {r}", a.ip())))?;
    }
    Ok(Some((name.to_owned(), addrs)))
}
