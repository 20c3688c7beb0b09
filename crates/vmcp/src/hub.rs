//! What every instance of one vMCP shares: the backends, the aggregation rules, the
//! health registry and the bounds. Built once from a validated config.

use std::sync::Arc;
use std::time::Duration;

use apiary_transport::client::Transport;

use crate::aggregate::Rules;
use crate::config::{ConfigError, VmcpConfig};
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
    pub health: Arc<HealthRegistry>,
    pub health_settings: HealthSettings,
    pub list_deadline: Duration,
    pub max_line: usize,
    pub queue: usize,
}

impl Hub {
    pub fn new(config: &VmcpConfig, limits: InstanceLimits) -> Result<Hub, ConfigError> {
        config.validate()?;
        let health_settings = HealthSettings {
            interval: config.health_interval(),
            check_timeout: config.health_interval().min(Duration::from_secs(10)),
            unhealthy_threshold: config.unhealthy_threshold(),
            breaker: config.circuit_breaker(),
        };
        let mut backends = Vec::with_capacity(config.backends.len());
        for b in &config.backends {
            backends.push(BackendSpec {
                name: b.name.clone(),
                url: b.url.clone(),
                timeout: config.timeout_for(&b.name),
                headers: config.headers_for(&b.name)?,
                transport: if b.transport == "sse" { Transport::Sse } else { Transport::StreamableHttp },
            });
        }
        let health =
            Arc::new(HealthRegistry::new(backends.iter().map(|b| Arc::new(BackendHealth::new(b, health_settings)))));
        Ok(Hub {
            backends,
            rules: Rules::from_config(config),
            health,
            health_settings,
            list_deadline: limits.list_deadline,
            max_line: limits.max_line.max(1024),
            queue: limits.queue.max(16),
        })
    }

    pub fn backend(&self, name: &str) -> Option<&BackendSpec> {
        self.backends.iter().find(|b| b.name == name)
    }

    pub fn backend_names(&self) -> Vec<String> {
        self.backends.iter().map(|b| b.name.clone()).collect()
    }
}
