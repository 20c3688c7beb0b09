//! MCP servers published as images, run through the Docker Engine API (Docker, or Podman's
//! compatible service): a [`Launch`] that creates a hardened container per launch, attaches to
//! its stdio (stdin written through the hijacked connection, stdout and stderr demultiplexed),
//! starts it, reports its exit status, and removes it when the proxy lets go of it.
//!
//! - [`engine`]: which socket the engine answers on.
//! - [`spec`]: the container's configuration and hardening, from the RunConfig.
//! - [`lifecycle`]: create, attach, start, wait, stop and remove.
//! - [`egress`]: the network namespace and egress proxy of an allow-list profile.
//!
//! One attach belongs to one container's life: closing it closes the server's stdin (Podman has
//! no real `StdinOnce`), so every launch is a new container and a restart never re-attaches.

pub mod egress;
pub mod engine;
pub mod inbound;
pub mod lifecycle;
pub mod spec;

use std::sync::Arc;
use std::time::Duration;

use apiary_config::RunConfig;
use apiary_transport::launch::{Launch, LaunchError, LaunchFuture};
use bollard::Docker;

pub use spec::{ContainerSpec, Limits, Network, WORKLOAD_LABEL};

use crate::log::LogFile;
use crate::secrets::Zeroizing;

/// How long a launch may spend pulling an image that is not on the machine yet.
pub const DEFAULT_PULL_TIMEOUT: Duration = Duration::from_secs(600);

/// A container could not be started, found or removed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(
        "no container engine answers; tried {0}. Start Docker or `podman system service`, or point DOCKER_HOST at the engine's socket"
    )]
    NoEngine(String),
    #[error("container engine at {endpoint}: {reason}")]
    Engine { endpoint: String, reason: String },
    #[error("cannot {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("image {image} is not on this machine and could not be pulled: {reason}")]
    Pull { image: String, reason: String },
    #[error("a {0} source has no image; the container runtime runs images only")]
    NotAnImage(&'static str),
    #[error("the egress allow-list (network.outbound.allow_host/allow_port): {0}")]
    Egress(String),
    #[error(
        "an HTTP-transport image under permission profile `none` or an allow-list is reached through a Unix socket, and the launcher was given none (ContainerLauncher::reached_through)"
    )]
    HttpNeedsSocket,
    #[error("{0}")]
    Invalid(String),
}

impl From<ContainerError> for LaunchError {
    fn from(e: ContainerError) -> Self {
        LaunchError::Other(e.to_string())
    }
}

/// Starts a fresh hardened container of one image for every launch.
#[derive(Clone)]
pub struct ContainerLauncher {
    docker: Docker,
    endpoint: String,
    spec: ContainerSpec,
    stderr_log: Option<Arc<LogFile>>,
    pull_timeout: Duration,
    /// Secret values for the server's environment, kept out of the spec (which is logged and
    /// compared) and sent only in the create call.
    secret_env: Vec<(String, Zeroizing<String>)>,
    /// Where the proxy reaches an HTTP server in a namespace of Apiary's.
    upstream_socket: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for ContainerLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerLauncher")
            .field("endpoint", &self.endpoint)
            .field("spec", &self.spec)
            .field("secret_env", &self.secret_env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ContainerLauncher {
    /// A launcher using `docker`, which answers at `endpoint` (kept for messages and state).
    pub fn new(docker: Docker, endpoint: impl Into<String>, spec: ContainerSpec) -> Self {
        ContainerLauncher {
            docker,
            endpoint: endpoint.into(),
            spec,
            stderr_log: None,
            pull_timeout: DEFAULT_PULL_TIMEOUT,
            secret_env: Vec::new(),
            upstream_socket: None,
        }
    }

    /// The launcher for an image RunConfig on the first engine that answers, `previous` (where
    /// the workload ran before) tried first ([`engine::connect_preferring`]).
    pub async fn for_run_config(config: &RunConfig, previous: Option<&str>) -> Result<Self, ContainerError> {
        let spec = ContainerSpec::for_run_config(config)?;
        let (docker, endpoint) = engine::connect_preferring(previous).await?;
        if matches!(spec.network, Network::AllowList(_)) {
            engine::check_joins_namespaces(&docker, &endpoint, "the allow-list for containers").await?;
        } else if spec.private_http_port().is_some() {
            engine::check_joins_namespaces(&docker, &endpoint, "an HTTP-transport image without network").await?;
        }
        Ok(ContainerLauncher::new(docker, endpoint, spec))
    }

    /// Copies the server's stderr into `log` instead of handing it to the caller.
    #[must_use]
    pub fn stderr_to(mut self, log: Arc<LogFile>) -> Self {
        self.stderr_log = Some(log);
        self
    }

    /// How long a launch may spend pulling a missing image.
    #[must_use]
    pub fn pull_timeout(mut self, limit: Duration) -> Self {
        self.pull_timeout = limit;
        self
    }

    /// Sets a variable in the server's environment (a later value for the same name wins).
    #[must_use]
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.spec.set_env(name, value);
        self
    }

    /// Sets a secret in the server's environment. Unlike [`Self::env`] the value stays out of
    /// the spec and of every message; it goes to the engine in the create call only (where, as
    /// any container environment, `docker/podman inspect` shows it to whoever may use the engine).
    #[must_use]
    pub fn secret_env(mut self, name: &str, value: &str) -> Self {
        self.secret_env.retain(|(k, _)| k != name);
        self.secret_env.push((name.to_owned(), Zeroizing::new(value.to_owned())));
        self
    }

    /// Lets the proxy reach an HTTP-transport server that runs without the engine's network
    /// (profile `none` or an allow-list) through the Unix socket `socket`: each container gets a
    /// namespace of Apiary's with only `lo`, and this process forwards the socket's connections to
    /// the server's port in it. Ignored for stdio servers and on the default network.
    #[must_use]
    pub fn reached_through(mut self, socket: impl Into<std::path::PathBuf>) -> Self {
        self.upstream_socket = Some(socket.into());
        self
    }

    /// The engine's endpoint (`unix:///run/podman/podman.sock`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// What every container of this launcher looks like.
    pub fn spec(&self) -> &ContainerSpec {
        &self.spec
    }

    /// Makes sure the image is on the machine: found locally, else pulled (bounded).
    pub async fn ensure_image(&self) -> Result<(), ContainerError> {
        lifecycle::ensure_image(&self.docker, &self.spec.image, self.pull_timeout).await
    }

    /// Removes every container of this workload that is still there (left by a proxy that was
    /// killed); returns how many were removed.
    pub async fn remove_leftovers(&self) -> Result<usize, ContainerError> {
        lifecycle::remove_workload_containers(&self.docker, &self.spec.workload).await
    }
}

impl Launch for ContainerLauncher {
    fn launch(&self) -> LaunchFuture<'_> {
        Box::pin(async move { Ok(lifecycle::start(self).await?) })
    }

    fn upstream_socket(&self) -> Option<std::path::PathBuf> {
        self.spec.private_http_port().and(self.upstream_socket.clone())
    }

    fn describe(&self) -> String {
        format!("container of {} via {}", self.spec.image, self.endpoint)
    }
}

/// Removes every container of `workload` on the engine at `endpoint` (what `apiary stop`/`rm`
/// do after the proxy is gone); returns how many were removed.
pub async fn remove_workload_containers(endpoint: &str, workload: &str) -> Result<usize, ContainerError> {
    let docker = engine::ping(endpoint)
        .await
        .map_err(|reason| ContainerError::Engine { endpoint: endpoint.to_owned(), reason })?;
    lifecycle::remove_workload_containers(&docker, workload).await
}
