//! A real Jaeger for telemetry tests: an OTLP/HTTP receiver to export spans to and the query
//! API (`/api/traces?service=…`) to read them back.
//!
//! `cargo xtask test-env` builds Jaeger from source (`JAEGER` in `tools.env`). [`Jaeger::start`]
//! writes a config with three free 127.0.0.1 ports (OTLP/HTTP, query HTTP, query gRPC), in-memory
//! storage and no self-telemetry, starts `jaeger --config …` and waits until the query API
//! answers. Dropping it sends SIGTERM to its process group, then SIGKILL. If the test process
//! dies, the kernel stops it: it runs under `setpriv --pdeathsig TERM`, spawned from one thread
//! that lives as long as the process (the same scheme as `keycloak.rs`), with `timeout 30m` as
//! the last backstop.

use crate::daemon::{free_port, spawn_from_long_lived_thread, stop_group, which};
use crate::env;
use serde_json::Value;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a start may take until the query API answers (~1 s alone; more under load).
const READY_LIMIT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(10);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(200);
const LIFETIME: &str = "30m";
const LOG_TAIL_LINES: usize = 30;

/// Why Jaeger could not be started or asked. `Debug` prints the message.
#[derive(thiserror::Error)]
pub enum JaegerError {
    #[error("Jaeger is not installed for tests ({0}); run `cargo xtask test-env`")]
    NotInstalled(String),
    #[error("cannot start Jaeger ({step}): {source}")]
    Spawn { step: &'static str, source: io::Error },
    #[error("Jaeger {what}; the end of its log:\n{tail}")]
    NotReady { what: String, tail: String },
    #[error("request to Jaeger ({url}) failed: {detail}")]
    Http { url: String, detail: String },
}

impl std::fmt::Debug for JaegerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A running all-in-one Jaeger with in-memory storage, stopped on drop.
pub struct Jaeger {
    otlp_port: u16,
    query_port: u16,
    child: Child,
    dir: tempfile_dir::Dir,
}

impl Jaeger {
    /// Starts Jaeger and waits until its query API answers. Call from a tokio runtime.
    pub async fn start() -> Result<Jaeger, JaegerError> {
        let binary = env::setting("JAEGER")
            .map(PathBuf::from)
            .filter(|p| p.is_file())
            .ok_or_else(|| JaegerError::NotInstalled("no JAEGER binary in tools.env".to_owned()))?;
        let jaeger = tokio::task::spawn_blocking(move || launch(&binary))
            .await
            .map_err(|e| JaegerError::Spawn { step: "join", source: io::Error::other(e.to_string()) })??;
        jaeger.wait_ready().await?;
        Ok(jaeger)
    }

    /// The OTLP/HTTP base URL (`http://127.0.0.1:<port>`); traces go to `/v1/traces` under it.
    pub fn otlp_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.otlp_port)
    }

    /// The query API's base URL (`http://127.0.0.1:<port>`).
    pub fn query_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.query_port)
    }

    /// Every stored trace of `service` (the `data` array of `/api/traces`), at most `limit`.
    pub async fn traces(&self, service: &str, limit: u32) -> Result<Vec<Value>, JaegerError> {
        let url = format!("{}/api/traces?service={}&limit={limit}&lookback=1h", self.query_url(), encode(service));
        let http = |detail: String| JaegerError::Http { url: url.clone(), detail };
        let client = reqwest::Client::builder().timeout(HTTP_TIMEOUT).build().map_err(|e| http(e.to_string()))?;
        let res = client.get(&url).send().await.map_err(|e| http(e.to_string()))?;
        let status = res.status();
        let body: Value = res.json().await.map_err(|e| http(e.to_string()))?;
        if !status.is_success() {
            // An unknown service is a 404 with an error body until its first span arrives.
            return Ok(Vec::new());
        }
        Ok(body.get("data").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    /// Polls [`Jaeger::traces`] until `found` picks something out of them or `limit` passes.
    pub async fn wait_for<T>(
        &self,
        service: &str,
        limit: Duration,
        mut found: impl FnMut(&[Value]) -> Option<T>,
    ) -> Result<T, JaegerError> {
        let deadline = Instant::now() + limit;
        loop {
            let traces = self.traces(service, 100).await?;
            if let Some(t) = found(&traces) {
                return Ok(t);
            }
            if Instant::now() > deadline {
                return Err(JaegerError::NotReady {
                    what: format!("had not stored the expected spans of {service} after {limit:?}: {traces:?}"),
                    tail: self.log_tail(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Jaeger's combined output.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("jaeger.log")
    }

    async fn wait_ready(&self) -> Result<(), JaegerError> {
        let deadline = Instant::now() + READY_LIMIT;
        let url = format!("{}/api/services", self.query_url());
        let client = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| JaegerError::Http { url: url.clone(), detail: e.to_string() })?;
        loop {
            if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(JaegerError::NotReady {
                    what: format!("did not answer {url} within {READY_LIMIT:?}"),
                    tail: self.log_tail(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

impl Drop for Jaeger {
    fn drop(&mut self) {
        stop_group(&mut self.child, STOP_GRACE);
    }
}

fn launch(binary: &Path) -> Result<Jaeger, JaegerError> {
    let step = |step: &'static str| move |source: io::Error| JaegerError::Spawn { step, source };
    let dir = tempfile_dir::Dir::new().map_err(step("create a directory"))?;
    let (otlp_port, query_port, grpc_port) = (
        free_port().map_err(step("find a free port"))?,
        free_port().map_err(step("find a free port"))?,
        free_port().map_err(step("find a free port"))?,
    );
    let config = dir.path().join("jaeger.yaml");
    std::fs::write(&config, config_yaml(otlp_port, query_port, grpc_port)).map_err(step("write the config"))?;
    let log = std::fs::File::create(dir.path().join("jaeger.log")).map_err(step("create the log"))?;
    let log_err = log.try_clone().map_err(step("clone the log handle"))?;
    let mut cmd = match which("setpriv") {
        Some(setpriv) => {
            let mut cmd = Command::new(setpriv);
            cmd.args(["--pdeathsig", "TERM", "--", "timeout"]);
            cmd
        }
        None => Command::new("timeout"),
    };
    cmd.args(["--kill-after=5s", LIFETIME])
        .arg(binary)
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    let child = spawn_from_long_lived_thread(cmd).map_err(step("spawn"))?;
    Ok(Jaeger { otlp_port, query_port, child, dir })
}

/// All-in-one on 127.0.0.1 only: OTLP/HTTP in, memory storage, the query API out; no
/// self-telemetry (its default Prometheus port 8888 would clash between instances).
fn config_yaml(otlp: u16, query: u16, grpc: u16) -> String {
    format!(
        "service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    enable_tracing: false
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{grpc}
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
"
    )
}

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A temporary directory removed on drop (tempfile is only a dev-dependency here).
mod tempfile_dir {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> std::io::Result<Dir> {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "apiary-jaeger-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&path)?;
            Ok(Dir(path))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
