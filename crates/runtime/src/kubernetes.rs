//! MCP servers as pods: a [`Launch`] that server-side-applies StatefulSet `<name>`, waits for pod
//! `<name>-0` to run, and attaches to its container `mcp` (stdin + stdout over the apiserver's
//! attach WebSocket). The proxy then speaks stdio to the pod exactly as to a local child.
//!
//! Detaching (the handle's `kill`) leaves the StatefulSet and its pod running: the server
//! belongs to whoever owns the StatefulSet (the operator's MCPServer, or `apiary run`'s
//! workload), and deleting it is their job. `exited` resolves when the attach ends, or when the
//! pod is replaced or its container restarts, because the stream attached to is then gone.
//!
//! RBAC this needs, and no more (names.md §4): statefulsets `get`, `patch` (apply); pods `get`;
//! `pods/attach` `create`, `get`.

pub mod manifest;
pub mod patch;
pub mod pod;

use std::time::Duration;

use apiary_config::{RunConfig, Source};
use apiary_transport::launch::{ChildHandle, ExitReason, Launch, LaunchError, LaunchFuture};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use kube::api::{AttachParams, AttachedProcess, Patch, PatchParams};
use kube::{Api, Client};
use tokio::sync::oneshot;

pub use manifest::ServerSpec;

use crate::secrets::Zeroizing;

/// The field manager Apiary applies the StatefulSet under.
pub const FIELD_MANAGER: &str = "apiary";

/// How long a launch waits for the pod to run (an image pull included).
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(180);

/// Bytes buffered between the attach WebSocket and the proxy, each way. A full buffer pushes
/// back on the other side rather than growing.
const STREAM_BUFFER: usize = 64 * 1024;

/// A pod could not be started or reached.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("cannot {what}: {source}")]
    Api { what: &'static str, source: kube::Error },
    #[error("pod {pod} will not start: {reason} {message}")]
    NotStarting { pod: String, reason: String, message: String },
    #[error("pod {pod} was not running after {waited:?} ({last})")]
    Timeout { pod: String, waited: Duration, last: String },
    #[error("the attach to pod {0} gave no {1} stream")]
    NoStream(String, &'static str),
    #[error("a {0} source has no image; the Kubernetes runtime runs images only")]
    NotAnImage(&'static str),
    #[error("cannot reach the cluster: {0}")]
    Client(String),
    #[error(transparent)]
    Patch(#[from] patch::PatchError),
}

impl From<KubeError> for LaunchError {
    fn from(e: KubeError) -> Self {
        LaunchError::Other(e.to_string())
    }
}

/// Starts (or finds) the server's StatefulSet and attaches to its pod.
#[derive(Clone)]
pub struct StatefulSetLauncher {
    client: Client,
    namespace: String,
    spec: ServerSpec,
    ready_timeout: Duration,
    /// `--secret` values (target variable → value): applied as Secret
    /// [`manifest::secret_name`], referenced by the StatefulSet, never in the spec or a message.
    secret_values: Vec<(String, Zeroizing<String>)>,
}

impl std::fmt::Debug for StatefulSetLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatefulSetLauncher")
            .field("namespace", &self.namespace)
            .field("spec", &self.spec)
            .field("ready_timeout", &self.ready_timeout)
            .field("secret_values", &self.secret_values.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl StatefulSetLauncher {
    /// Runs `image` as StatefulSet `name` in `namespace`.
    pub fn new(
        client: Client,
        namespace: impl Into<String>,
        name: impl Into<String>,
        image: impl Into<String>,
    ) -> Self {
        StatefulSetLauncher {
            client,
            namespace: namespace.into(),
            spec: ServerSpec { name: name.into(), image: image.into(), ..ServerSpec::default() },
            ready_timeout: DEFAULT_READY_TIMEOUT,
            secret_values: Vec::new(),
        }
    }

    /// Gives the server environment variable `name` from a secret: the value goes into Secret
    /// `<name>-apiary-secrets` (labelled for `apiary rm`), and the container gets it through
    /// `env[].valueFrom.secretKeyRef`; the StatefulSet never holds it. Needs `secrets` `patch`
    /// (apply) and `delete` in the namespace.
    #[must_use]
    pub fn secret_env(mut self, name: &str, value: &str) -> Self {
        self.secret_values.retain(|(k, _)| k != name);
        self.secret_values.push((name.to_owned(), Zeroizing::new(value.to_owned())));
        if !self.spec.secret_env.iter().any(|k| k == name) {
            self.spec.secret_env.push(name.to_owned());
        }
        self
    }

    /// The launcher for an image RunConfig: its name, image, args, `MCP_TRANSPORT`, and its `env`
    /// (last, so a user can override the transport variable).
    pub fn for_run_config(client: Client, namespace: impl Into<String>, config: &RunConfig) -> Result<Self, KubeError> {
        let Source::Image(image) = &config.source else {
            return Err(KubeError::NotAnImage(config.source.kind()));
        };
        let mut launcher = StatefulSetLauncher::new(client, namespace, &config.name, &image.reference)
            .args(config.args.iter().cloned())
            .env("MCP_TRANSPORT", config.effective_transport().as_str());
        for (k, v) in &config.env {
            launcher = launcher.env(k, v);
        }
        Ok(launcher)
    }

    /// Arguments appended to the image's entrypoint.
    #[must_use]
    pub fn args(mut self, args: impl IntoIterator<Item = String>) -> Self {
        self.spec.args.extend(args);
        self
    }

    /// Sets an environment variable on container `mcp` (a later value for the same name wins).
    #[must_use]
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.spec.env.retain(|(k, _)| *k != name);
        self.spec.env.push((name, value.into()));
        self
    }

    /// Merges `patch` (a PodTemplateSpec as JSON) into the pod template, after any given
    /// before; refused when it is not an object or a named list entry has no name.
    pub fn pod_patch(mut self, patch: serde_json::Value) -> Result<Self, KubeError> {
        patch::validate(&patch)?;
        self.spec.pod_patches.push(patch);
        Ok(self)
    }

    /// Puts `owner` (an ownerReference as JSON) on the StatefulSet and Services.
    #[must_use]
    pub fn owner(mut self, owner: serde_json::Value) -> Self {
        self.spec.owner = Some(owner);
        self
    }

    /// Runs an HTTP server listening on `port` instead of a stdio one: no attach, and Services
    /// `mcp-<name>` and `mcp-<name>-headless` in front of the pod.
    #[must_use]
    pub fn http(mut self, port: u16) -> Self {
        self.spec.http_port = Some(port);
        // Servers built for ToolHive read their port from MCP_PORT; a value the user set wins.
        if !self.spec.env.iter().any(|(k, _)| k == "MCP_PORT") {
            self.spec.env.push(("MCP_PORT".to_owned(), port.to_string()));
        }
        self
    }

    /// How long a launch waits for the pod to run.
    #[must_use]
    pub fn ready_timeout(mut self, limit: Duration) -> Self {
        self.ready_timeout = limit;
        self
    }

    /// What is applied.
    pub fn spec(&self) -> &ServerSpec {
        &self.spec
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Applies the StatefulSet and, for an HTTP server, its Services (idempotent: the same spec
    /// changes nothing and restarts nothing).
    pub async fn apply(&self) -> Result<(), KubeError> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        if !self.secret_values.is_empty() {
            // First, so the pod never starts without the values it references.
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            let body = manifest::secret(&self.spec, &self.secret_values);
            secrets
                .patch(&manifest::secret_name(&self.spec.name), &params, &Patch::Apply(&body))
                .await
                .map_err(|source| KubeError::Api { what: "apply the server's Secret", source })?;
        }
        let sets: Api<StatefulSet> = Api::namespaced(self.client.clone(), &self.namespace);
        let body = manifest::statefulset(&self.spec)?;
        sets.patch(&self.spec.name, &params, &Patch::Apply(&body))
            .await
            .map_err(|source| KubeError::Api { what: "apply the StatefulSet", source })?;
        let services: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
        for body in manifest::services(&self.spec) {
            let name = body["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            services
                .patch(&name, &params, &Patch::Apply(&body))
                .await
                .map_err(|source| KubeError::Api { what: "apply the server's Service", source })?;
        }
        Ok(())
    }

    /// For a stdio server, deletes Services `mcp-<name>` and `mcp-<name>-headless` left from
    /// when it spoke HTTP, so none points at a port nothing listens on. Absent ones are fine.
    pub async fn remove_http_services(&self) -> Result<(), KubeError> {
        if self.spec.http_port.is_some() {
            return Ok(());
        }
        let services: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
        for name in [manifest::service_name(&self.spec.name), manifest::headless_service_name(&self.spec.name)] {
            match services.delete(&name, &kube::api::DeleteParams::default()).await {
                Ok(_) => tracing::info!(service = %name, "deleted the Service of the server's former HTTP transport"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => return Err(KubeError::Api { what: "delete the server's old Service", source }),
            }
        }
        Ok(())
    }

    /// The API client this launcher uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn start(&self) -> Result<ChildHandle, KubeError> {
        self.apply().await?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let pod_name = manifest::pod_name(&self.spec.name);
        let running = pod::wait_running(&pods, &pod_name, &self.spec, self.ready_timeout).await?;
        if self.spec.http_port.is_some() {
            return Ok(watch_http_pod(pods, running));
        }
        let params = AttachParams::default()
            .container(manifest::CONTAINER)
            .stdin(true)
            .stdout(true)
            .stderr(false)
            .tty(false)
            .max_stdin_buf_size(STREAM_BUFFER)
            .max_stdout_buf_size(STREAM_BUFFER);
        let mut attached = pods
            .attach(&pod_name, &params)
            .await
            .map_err(|source| KubeError::Api { what: "attach to the MCP container", source })?;
        let stdin = attached.stdin().ok_or_else(|| KubeError::NoStream(pod_name.clone(), "stdin"))?;
        let stdout = attached.stdout().ok_or_else(|| KubeError::NoStream(pod_name.clone(), "stdout"))?;
        let (exit_tx, exited) = oneshot::channel();
        let (kill, kill_rx) = oneshot::channel();
        tracing::debug!(pod = %pod_name, namespace = %self.namespace, "attached to the MCP container");
        tokio::spawn(supervise(attached, pods, running, kill_rx, exit_tx));
        Ok(ChildHandle { pid: None, stdin: Box::new(stdin), stdout: Box::new(stdout), stderr: None, exited, kill })
    }
}

impl Launch for StatefulSetLauncher {
    fn launch(&self) -> LaunchFuture<'_> {
        Box::pin(async move { self.start().await.map_err(LaunchError::from) })
    }

    fn describe(&self) -> String {
        format!("statefulset {}/{} ({})", self.namespace, self.spec.name, self.spec.image)
    }
}

/// An HTTP server's pod as a child: no streams (the proxy reaches it through Service
/// `mcp-<name>`); `exited` resolves when the pod is replaced or its container restarts, so the
/// proxy's supervisor re-applies the StatefulSet and waits for the pod again.
fn watch_http_pod(pods: Api<Pod>, running: pod::PodRef) -> ChildHandle {
    let (exit_tx, exited) = oneshot::channel();
    let (kill, mut kill_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let reason = tokio::select! {
            _ = &mut kill_rx => ExitReason::other("stopped watching the pod"),
            why = pod::changed(pods, running) => ExitReason::other(why),
        };
        let _ = exit_tx.send(reason);
    });
    ChildHandle {
        pid: None,
        stdin: Box::new(tokio::io::sink()),
        stdout: Box::new(tokio::io::empty()),
        stderr: None,
        exited,
        kill,
    }
}

/// Owns the attach until it ends: on `kill` (sent or dropped) it detaches, leaving the pod
/// alone; otherwise it reports why the stream ended.
async fn supervise(
    mut attached: AttachedProcess,
    pods: Api<Pod>,
    running: pod::PodRef,
    mut kill_rx: oneshot::Receiver<()>,
    exit_tx: oneshot::Sender<ExitReason>,
) {
    let pod_name = running.name.clone();
    let status = attached.take_status();
    let reason = tokio::select! {
        _ = &mut kill_rx => {
            attached.abort();
            ExitReason::other(format!("detached from pod {pod_name}"))
        }
        status = async move {
            match status {
                Some(s) => s.await,
                None => std::future::pending().await,
            }
        } => match status {
            Some(s) => match s.message.filter(|m| !m.is_empty()).or(s.status) {
                Some(m) => ExitReason::other(format!("the attach to pod {pod_name} ended: {m}")),
                None => ExitReason::other(format!("the attach to pod {pod_name} ended")),
            },
            None => ExitReason::other(format!("the attach to pod {pod_name} ended")),
        },
        why = pod::changed(pods, running) => {
            attached.abort();
            ExitReason::other(why)
        }
    };
    tracing::debug!(pod = %pod_name, reason = %reason, "MCP container detached");
    // Dropping the attach closes the WebSocket, and with it the stdout the proxy reads.
    drop(attached);
    let _ = exit_tx.send(reason);
}

/// Scales StatefulSet `name` to zero replicas (`apiary stop`): the server stops, its spec stays
/// for `apiary start`, which applies one replica again. An absent StatefulSet is fine.
pub async fn scale_to_zero(client: &Client, namespace: &str, name: &str) -> Result<(), KubeError> {
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let body = serde_json::json!({"spec": {"replicas": 0}});
    match sets.patch(name, &PatchParams::default(), &Patch::Merge(&body)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(source) => Err(KubeError::Api { what: "scale the StatefulSet to zero", source }),
    }
}

/// Deletes StatefulSet `name`, the Services an HTTP server had and the Secret of its `--secret`
/// values (`apiary rm`). Absent ones are fine.
pub async fn delete_server(client: &Client, namespace: &str, name: &str) -> Result<(), KubeError> {
    let params = kube::api::DeleteParams::default();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    match sets.delete(name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(source) => return Err(KubeError::Api { what: "delete the StatefulSet", source }),
    }
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    for service in [manifest::service_name(name), manifest::headless_service_name(name)] {
        match services.delete(&service, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => return Err(KubeError::Api { what: "delete the server's Service", source }),
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = manifest::secret_name(name);
    match secrets.get_opt(&secret).await {
        // Only the Secret Apiary made: one of the same name made by someone else stays.
        Ok(Some(s))
            if s.metadata.labels.as_ref().and_then(|l| l.get(manifest::MANAGED_BY.0)).map(String::as_str)
                == Some(manifest::MANAGED_BY.1) =>
        {
            match secrets.delete(&secret, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => return Err(KubeError::Api { what: "delete the server's Secret", source }),
            }
        }
        Ok(_) => {}
        // A ServiceAccount that may not read Secrets never made one either.
        Err(kube::Error::Api(e)) if e.code == 403 => {}
        Err(source) => return Err(KubeError::Api { what: "look up the server's Secret", source }),
    }
    Ok(())
}

/// A client from the environment: in-cluster service account, else `KUBECONFIG` / ~/.kube/config.
pub async fn default_client() -> Result<Client, KubeError> {
    Client::try_default().await.map_err(|e| KubeError::Client(e.to_string()))
}
