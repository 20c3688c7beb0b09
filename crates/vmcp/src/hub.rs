//! What every instance of one vMCP shares: the backends, the aggregation rules, the
//! health registry and the bounds. Built from a validated config, and built again (then
//! swapped in whole) when the config file changes.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use apiary_policy::outgoing::TokenExchanger;
use apiary_transport::client::{AddressGuard, Reach, SessionOptions, Transport, check_ca_bundle};

use crate::aggregate::Rules;
use crate::config::{ConfigError, Problem, StaticBackend, VmcpConfig};
use crate::health::{BackendHealth, HealthRegistry, HealthSettings};

/// One backend as the instances reach it.
#[derive(Clone)]
pub struct BackendSpec {
    pub name: String,
    pub url: String,
    /// Bound on one request to it.
    pub timeout: Duration,
    /// Sent with every request (outgoing auth); values are credentials.
    pub headers: Vec<(String, String)>,
    /// Streamable HTTP or the 2024-11-05 HTTP+SSE transport.
    pub transport: Transport,
    /// Its CA bundle, and for an entry the SSRF guard checked at every connect.
    pub reach: Reach,
    /// Its `token_exchange` outgoing auth: each session's caller token is exchanged for it.
    pub exchange: Option<Arc<BackendExchange>>,
    /// Equal when a reloaded config reaches the backend the same way.
    pub fingerprint: u64,
}

/// A backend's token exchange: the exchanger (its cache, per caller token until shortly
/// before expiry, shared by every session of this config) and the header the result goes in.
#[derive(Debug)]
pub struct BackendExchange {
    pub exchanger: TokenExchanger,
    /// `Authorization` (as `Bearer <token>`), or a header given the bare token.
    pub header: String,
}

impl BackendExchange {
    /// The header carrying `token`.
    pub fn header_for(&self, token: &str) -> (String, String) {
        if self.header.eq_ignore_ascii_case("authorization") {
            (self.header.clone(), format!("Bearer {token}"))
        } else {
            (self.header.clone(), token.to_owned())
        }
    }
}

/// The exchanger of `backend`'s `token_exchange`, checked now (a missing secret variable or a
/// plain-HTTP token URL is an error naming the field).
fn exchange(config: &VmcpConfig, backend: &str) -> Result<Option<Arc<BackendExchange>>, ConfigError> {
    let Some((path, t)) = config.token_exchange_for(backend) else { return Ok(None) };
    let invalid = |message: String| ConfigError::Invalid(vec![Problem { path: path.clone(), message }]);
    let cfg = t.to_policy().map_err(invalid)?;
    let exchanger = TokenExchanger::new(&cfg).map_err(|e| invalid(e.to_string()))?;
    let header = t.external_token_header_name.clone().unwrap_or_else(|| "Authorization".to_owned());
    Ok(Some(Arc::new(BackendExchange { exchanger, header })))
}

/// Largest CA bundle file read.
const MAX_CA_BUNDLE_BYTES: u64 = 1024 * 1024;

impl BackendSpec {
    /// The options of a session with this backend.
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            headers: self.headers.clone(),
            transport: self.transport,
            timeout: self.timeout,
            reach: self.reach.clone(),
            ..SessionOptions::default()
        }
    }
}

/// What a backend's connections need beyond its URL: the CA bundle read (bounded) and checked
/// now, and for an entry the guard that checks every resolved address with the operator's own
/// SSRF rules.
fn reach(index: usize, b: &StaticBackend) -> Result<Reach, ConfigError> {
    let invalid = |message: String| {
        ConfigError::Invalid(vec![Problem { path: format!("backends[{index}].caBundlePath"), message }])
    };
    let mut reach = Reach::default();
    if let Some(path) = &b.ca_bundle_path {
        let mut pem = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_CA_BUNDLE_BYTES + 1), &mut pem))
            .map_err(|e| invalid(format!("cannot read {path}: {e}")))?;
        if pem.len() as u64 > MAX_CA_BUNDLE_BYTES {
            return Err(invalid(format!("{path} is larger than {MAX_CA_BUNDLE_BYTES} bytes")));
        }
        check_ca_bundle(&pem).map_err(|e| invalid(format!("{path}: {e}")))?;
        reach.ca_bundle_pem = Some(pem.into());
    }
    if b.is_entry() {
        let allow_private = b.allow_private_endpoint;
        reach.guard = Some(AddressGuard::new(move |ip| {
            apiary_config::ssrf::check_ip(ip, allow_private).map_err(|class| {
                let hint = if class.is_private_range() { " (allowPrivateEndpoint lifts this)" } else { "" };
                format!("{class}, which an MCPServerEntry may not reach{hint}")
            })
        }));
    }
    Ok(reach)
}

impl std::fmt::Debug for BackendSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("BackendSpec")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("header_names", &names)
            .field("transport", &self.transport)
            .field("reach", &self.reach)
            .field("token_exchange", &self.exchange.is_some())
            .finish()
    }
}

/// Bounds of an instance, as for a real stdio child.
#[derive(Debug, Clone, Copy)]
pub struct InstanceLimits {
    /// Longest line read from the front.
    pub max_line: usize,
    /// Messages queued toward the front.
    pub queue: usize,
    /// How long one list waits for the slowest backend before answering without it.
    pub list_deadline: Duration,
}

impl Default for InstanceLimits {
    fn default() -> Self {
        InstanceLimits { max_line: 16 * 1024 * 1024, queue: 1024, list_deadline: Duration::from_secs(10) }
    }
}

pub(crate) struct Hub {
    pub backends: Vec<BackendSpec>,
    pub rules: Rules,
    /// The registry every hub of this vMCP shares (what `/status` reads).
    pub health: Arc<HealthRegistry>,
    /// This hub's backends' health records, installed in `health` when the hub goes live.
    pub health_records: Vec<Arc<BackendHealth>>,
    pub health_settings: HealthSettings,
    pub list_deadline: Duration,
    /// `partialFailureMode: fail`: a list missing a backend is an error, not a partial answer.
    pub fail_partial_lists: bool,
    pub max_line: usize,
    pub queue: usize,
    /// The config's `incomingAuth`: the proxy's policy was built from it once, so a reload
    /// that changes it is refused.
    pub incoming: Option<crate::config::IncomingAuth>,
    /// Which revision each backend speaks (probed once per config).
    pub eras: crate::era::Eras,
}

impl Hub {
    /// A hub for `config`; `health` is the registry to share (a reload passes the live one,
    /// whose records are kept for backends that did not change).
    pub fn new(
        config: &VmcpConfig,
        limits: InstanceLimits,
        health: Option<Arc<HealthRegistry>>,
    ) -> Result<Hub, ConfigError> {
        config.validate()?;
        let health_settings = HealthSettings {
            interval: config.health_interval(),
            check_timeout: config.health_interval().min(Duration::from_secs(10)),
            unhealthy_threshold: config.unhealthy_threshold(),
            breaker: config.circuit_breaker(),
        };
        let mut backends = Vec::with_capacity(config.backends.len());
        for (i, b) in config.backends.iter().enumerate() {
            let headers = config.headers_for(&b.name)?;
            let timeout = config.timeout_for(&b.name);
            let fingerprint = fingerprint(b, &headers, timeout, config.token_exchange_for(&b.name).map(|(_, t)| t));
            backends.push(BackendSpec {
                exchange: exchange(config, &b.name)?,
                reach: reach(i, b)?,
                name: b.name.clone(),
                url: b.url.clone(),
                timeout,
                headers,
                transport: if b.transport == "sse" { Transport::Sse } else { Transport::StreamableHttp },
                fingerprint,
            });
        }
        let health = health.unwrap_or_default();
        let health_records = backends
            .iter()
            .map(|b| match health.get(&b.name) {
                Some(h) if h.describes(b, health_settings) => h,
                _ => Arc::new(BackendHealth::new(b, health_settings)),
            })
            .collect();
        Ok(Hub {
            backends,
            rules: Rules::from_config(config),
            health,
            health_records,
            health_settings,
            list_deadline: limits.list_deadline,
            fail_partial_lists: config.partial_failure_fails(),
            max_line: limits.max_line.max(1024),
            queue: limits.queue.max(16),
            incoming: config.incoming_auth.clone(),
            eras: crate::era::Eras::default(),
        })
    }

    pub fn backend(&self, name: &str) -> Option<&BackendSpec> {
        self.backends.iter().find(|b| b.name == name)
    }

    pub fn backend_names(&self) -> Vec<String> {
        self.backends.iter().map(|b| b.name.clone()).collect()
    }

    /// Whether some backend exchanges the caller's token.
    pub fn wants_caller(&self) -> bool {
        self.backends.iter().any(|b| b.exchange.is_some())
    }
}

/// Equal for two configs of a backend that reach it the same way (an open session with it
/// stays valid across a reload). Only compared, never shown: it covers header values.
fn fingerprint(
    b: &StaticBackend,
    headers: &[(String, String)],
    timeout: Duration,
    exchange: Option<&crate::config::TokenExchange>,
) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&b.url, &b.transport, &b.kind, b.allow_private_endpoint, &b.ca_bundle_path, headers, timeout, exchange)
        .hash(&mut h);
    h.finish()
}

/// The live hub, swapped whole when the config changes; instances read it at every step and
/// watch `generation` to learn of a swap.
pub(crate) struct Shared {
    current: RwLock<Arc<Hub>>,
    generation: watch::Sender<u64>,
}

impl Shared {
    pub fn new(hub: Hub) -> Shared {
        hub.health.replace(hub.health_records.iter().cloned());
        Shared { current: RwLock::new(Arc::new(hub)), generation: watch::Sender::new(0) }
    }

    pub fn hub(&self) -> Arc<Hub> {
        Arc::clone(&self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Makes `hub` the live one and tells every instance.
    pub fn swap(&self, hub: Hub) {
        hub.health.replace(hub.health_records.iter().cloned());
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(hub);
        self.generation.send_modify(|g| *g += 1);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A self-signed CA (P-256, valid until 2126), only ever parsed.
    const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBiDCCAS+gAwIBAgIULBYuoEZLAxDQdCT+e5E4QniBusQwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOYXBpYXJ5IHRlc3QgQ0EwIBcNMjYxMjA3MTUxNDQyWhgPMjEy
NjExMTMxNTE0NDJaMBkxFzAVBgNVBAMMDmFwaWFyeSB0ZXN0IENBMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAExnjWT+dLXPGCODQ0y2XCb5BXbLpglT0MguWMJ5ZV
YLcO7xbGozW3JeHH/r095gC7Y5IhPzUirMzJVslL2jt86aNTMFEwHQYDVR0OBBYE
FCbHp6KiTfoNMDmlqKoTZFnbC+USMB8GA1UdIwQYMBaAFCbHp6KiTfoNMDmlqKoT
ZFnbC+USMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgFkChLzqf
w4zYZrK2tqYzefmKryFzsF2moQR8BQmbzWMCIGkP7y68SLLKFzsH8CWi/tg7qHOD
r9QgkoWwwivjfcRt
-----END CERTIFICATE-----
";

    fn hub(ca_path: &str) -> Result<Hub, ConfigError> {
        let text = format!(
            "backends:\n  - {{name: a, url: 'https://x.example/mcp', type: entry, caBundlePath: '{ca_path}'}}\n  - {{name: b, url: 'http://127.0.0.1:9/mcp'}}\n"
        );
        Hub::new(&VmcpConfig::parse(&text).unwrap(), InstanceLimits::default(), None)
    }

    #[test]
    fn a_ca_bundle_is_read_and_checked_at_start_and_entries_get_the_guard() {
        let dir = std::env::temp_dir().join(format!("apiary-vmcp-hub-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("ca.crt");
        std::fs::write(&good, CA_PEM).unwrap();
        let h = hub(good.to_str().unwrap()).unwrap();
        let (a, b) = (h.backend("a").unwrap(), h.backend("b").unwrap());
        assert_eq!(a.reach.ca_bundle_pem.as_deref(), Some(CA_PEM.as_bytes()));
        assert!(a.reach.guard.is_some(), "an entry is guarded");
        assert!(b.reach.guard.is_none() && b.reach.ca_bundle_pem.is_none(), "a member is not");

        let bad = dir.join("bad.crt");
        std::fs::write(&bad, "not a certificate").unwrap();
        for path in [bad.to_str().unwrap(), "/nonexistent/ca.crt"] {
            let Err(err) = hub(path) else { panic!("{path} was accepted") };
            assert!(err.to_string().contains("backends[0].caBundlePath") && err.to_string().contains(path), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
