//! The real kubernetes-mcp-server (v0.0.67, `KUBERNETES_MCP_SERVER` in `tools.env`) in
//! passthrough mode against the test cluster, as seed 004 use case 2 runs it: its kubeconfig has
//! the cluster's server and CA and no credentials, and `cluster_auth_mode = "passthrough"` sends
//! each request's `Authorization: Bearer …` on to the apiserver.
//!
//! `require_oauth = false` (checked against v0.0.67): the server validates no token itself, so
//! `initialize` and `tools/list` work without one (a gateway lists tools without a user token),
//! while every tool call carries its own request's bearer to the apiserver, per request (a
//! session initialised without a token may call with one). A call without a token reaches the
//! apiserver anonymously and comes back as `isError: true` ("failed to list namespaces:
//! unknown"); an RBAC refusal too ("… is forbidden: User …"). With `require_oauth = true` the
//! server would itself refuse a token whose audience is not its `oauth_audience` (401) and any
//! request without one, `tools/list` included.
//!
//! Stopping: as Keycloak and Jaeger (`daemon.rs`): its own process group under `setpriv
//! --pdeathsig TERM` and `timeout 30m`, SIGTERM then SIGKILL on drop, the directory removed.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::daemon::{free_port, spawn_from_long_lived_thread, stop_group, which};
use crate::env;
use crate::kube_oidc::ClusterOidc;

/// It answers `/healthz` in ~0.3 s alone; more under load.
const READY_LIMIT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(200);
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
const LIFETIME: &str = "30m";
const LOG_TAIL_LINES: usize = 30;

/// Why kubernetes-mcp-server could not be started. `Debug` prints the message.
#[derive(thiserror::Error)]
pub enum KubernetesMcpError {
    #[error("kubernetes-mcp-server is not installed for tests ({0}); run `cargo xtask test-env`")]
    NotInstalled(String),
    #[error("cannot start kubernetes-mcp-server ({step}): {source}")]
    Spawn { step: &'static str, source: io::Error },
    #[error("kubernetes-mcp-server {what}; the end of its log:\n{tail}")]
    NotReady { what: String, tail: String },
}

impl std::fmt::Debug for KubernetesMcpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// How to run it; the default is the seed's server on a free port.
#[derive(Debug, Clone, Default)]
pub struct PassthroughOptions {
    /// The port on 127.0.0.1; `None` picks a free one (the seed's Service points at 9999).
    pub port: Option<u16>,
    /// `--toolsets`; empty keeps the server's default (core, config).
    pub toolsets: Vec<String>,
    /// `--read-only`: only tools annotated read-only.
    pub read_only: bool,
}

/// A running kubernetes-mcp-server in passthrough mode, stopped and removed on drop.
pub struct KubernetesMcpServer {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl KubernetesMcpServer {
    /// Writes its kubeconfig (no credentials) and TOML config, starts it and waits until
    /// `/healthz` answers. Call from a tokio runtime.
    pub async fn start_passthrough(
        cluster: &ClusterOidc,
        options: &PassthroughOptions,
    ) -> Result<KubernetesMcpServer, KubernetesMcpError> {
        let binary = env::setting("KUBERNETES_MCP_SERVER")
            .map(PathBuf::from)
            .filter(|p| p.is_file())
            .ok_or_else(|| KubernetesMcpError::NotInstalled("no KUBERNETES_MCP_SERVER binary in tools.env".into()))?;
        let cluster = cluster.clone();
        let options = options.clone();
        let server = tokio::task::spawn_blocking(move || launch(&binary, &cluster, &options))
            .await
            .map_err(|e| KubernetesMcpError::Spawn { step: "join", source: io::Error::other(e.to_string()) })??;
        let mut server = server;
        server.wait_ready().await?;
        Ok(server)
    }

    /// `http://127.0.0.1:<port>/mcp` (Streamable HTTP).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its combined output.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("kubernetes-mcp-server.log")
    }

    async fn wait_ready(&mut self) -> Result<(), KubernetesMcpError> {
        let deadline = Instant::now() + READY_LIMIT;
        let url = format!("http://127.0.0.1:{}/healthz", self.port);
        let client = reqwest::Client::builder().timeout(HTTP_TIMEOUT).no_proxy().build().map_err(|e| {
            KubernetesMcpError::NotReady { what: format!("cannot build a client: {e}"), tail: String::new() }
        })?;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.not_ready(format!("exited ({status}) before {url} answered")));
            }
            if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.not_ready(format!("did not answer {url} within {READY_LIMIT:?}")));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn not_ready(&self, what: String) -> KubernetesMcpError {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        KubernetesMcpError::NotReady { what, tail: lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n") }
    }
}

impl Drop for KubernetesMcpServer {
    fn drop(&mut self) {
        stop_group(&mut self.child, STOP_GRACE);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Its TOML: passthrough, no OAuth of its own (see the module docs), loopback only.
fn config_toml(port: u16, kubeconfig: &Path) -> String {
    format!(
        "port = \"{port}\"\n\
         bind_address = \"127.0.0.1\"\n\
         kubeconfig = \"{}\"\n\
         cluster_provider_strategy = \"kubeconfig\"\n\
         require_oauth = false\n\
         cluster_auth_mode = \"passthrough\"\n",
        kubeconfig.display()
    )
}

fn launch(
    binary: &Path,
    cluster: &ClusterOidc,
    options: &PassthroughOptions,
) -> Result<KubernetesMcpServer, KubernetesMcpError> {
    let step = |step: &'static str| move |source: io::Error| KubernetesMcpError::Spawn { step, source };
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "apiary-kubernetes-mcp-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(step("create a directory"))?;
    let started = (|| {
        let port = match options.port {
            Some(port) => port,
            None => free_port().map_err(step("find a free port"))?,
        };
        let kubeconfig = dir.join("passthrough.kubeconfig");
        cluster.write_passthrough_kubeconfig(&kubeconfig).map_err(step("write the kubeconfig"))?;
        let config = dir.join("config.toml");
        std::fs::write(&config, config_toml(port, &kubeconfig)).map_err(step("write the config"))?;
        let log = std::fs::File::create(dir.join("kubernetes-mcp-server.log")).map_err(step("create the log"))?;
        let log_err = log.try_clone().map_err(step("clone the log handle"))?;
        let mut cmd = match which("setpriv") {
            Some(setpriv) => {
                let mut cmd = Command::new(setpriv);
                cmd.args(["--pdeathsig", "TERM", "--", "timeout"]);
                cmd
            }
            None => Command::new("timeout"),
        };
        cmd.args(["--kill-after=5s", LIFETIME]).arg(binary).arg("--config").arg(&config);
        if !options.toolsets.is_empty() {
            cmd.arg("--toolsets").arg(options.toolsets.join(","));
        }
        if options.read_only {
            cmd.arg("--read-only");
        }
        cmd.current_dir(&dir).stdin(Stdio::null()).stdout(log).stderr(log_err).process_group(0);
        let child = spawn_from_long_lived_thread(cmd).map_err(step("spawn"))?;
        Ok((port, child))
    })();
    match started {
        Ok((port, child)) => Ok(KubernetesMcpServer { port, child, dir }),
        Err(err) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_passes_tokens_through_without_oauth_of_its_own() {
        let toml = config_toml(19999, Path::new("/w/k"));
        assert!(toml.contains("cluster_auth_mode = \"passthrough\"\n"), "{toml}");
        assert!(toml.contains("require_oauth = false\n"), "{toml}");
        assert!(toml.contains("bind_address = \"127.0.0.1\"\n") && toml.contains("port = \"19999\"\n"), "{toml}");
        assert!(toml.contains("kubeconfig = \"/w/k\"\n"), "{toml}");
    }
}
