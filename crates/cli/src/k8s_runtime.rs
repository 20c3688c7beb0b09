//! Which runtime `apiary run` uses, and the Kubernetes one's wiring (names.md §4, seed 003).
//!
//! The Kubernetes runtime is chosen by `--runtime kubernetes`, else `TOOLHIVE_RUNTIME=kubernetes`,
//! else by `KUBERNETES_SERVICE_HOST` being set (Apiary running in a pod, as in seed 003). There an
//! image runs as StatefulSet `<name>` in the pod's own namespace, reached by attach, and the proxy
//! listens on `0.0.0.0` by default so that a Service can reach it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use apiary_config::RunConfig;
use apiary_runtime::kubernetes::{StatefulSetLauncher, default_client};
use apiary_runtime::secrets::{SecretsDir, SecretsEnv};
use apiary_runtime::state::StateDir;
use apiary_transport::launch::Launch;

/// Where a ServiceAccount's namespace is mounted in every pod.
const SA_NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Where images run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    /// This machine (local processes; images need a container runtime).
    Local,
    /// The cluster Apiary can reach: images run as StatefulSets.
    Kubernetes,
}

impl RuntimeKind {
    /// The flag value that selects this runtime.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Local => "local",
            RuntimeKind::Kubernetes => "kubernetes",
        }
    }
}

/// The runtime for `flag` and this process's environment.
pub fn select(flag: Option<&str>) -> anyhow::Result<RuntimeKind> {
    select_with(flag, |k| std::env::var(k).ok())
}

/// [`select`] with the environment as a function, for tests.
pub fn select_with(flag: Option<&str>, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<RuntimeKind> {
    if let Some(value) = flag {
        return parse(value).with_context(|| format!("--runtime {value:?}"));
    }
    if let Some(value) = env("TOOLHIVE_RUNTIME").filter(|v| !v.is_empty()) {
        return parse(&value).with_context(|| format!("TOOLHIVE_RUNTIME={value:?}"));
    }
    if env("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty()) {
        return Ok(RuntimeKind::Kubernetes);
    }
    Ok(RuntimeKind::Local)
}

fn parse(value: &str) -> anyhow::Result<RuntimeKind> {
    match value.to_ascii_lowercase().as_str() {
        "kubernetes" | "k8s" => Ok(RuntimeKind::Kubernetes),
        // ToolHive's container engines and Apiary's two local runtimes: all mean "this machine"
        // here (run_cmd checks that the source fits `process` or `container`).
        "local" | "docker" | "podman" | "colima" | "process" | "container" => Ok(RuntimeKind::Local),
        _ => bail!("unknown runtime; use process or container (this machine), or kubernetes"),
    }
}

/// The namespace workloads go to: the ServiceAccount's namespace file, else `POD_NAMESPACE`, else
/// `default`.
pub fn namespace() -> String {
    namespace_with(Path::new(SA_NAMESPACE_FILE), |k| std::env::var(k).ok())
}

/// [`namespace`] with the file and environment given, for tests.
pub fn namespace_with(sa_file: &Path, env: impl Fn(&str) -> Option<String>) -> String {
    if let Ok(text) = std::fs::read_to_string(sa_file)
        && !text.trim().is_empty()
    {
        return text.trim().to_owned();
    }
    env("POD_NAMESPACE").map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).unwrap_or_else(|| "default".into())
}

/// True for an image reference (`docker.io/mcp/fetch`, `ghcr.io/a/b:1`, `busybox`): no scheme,
/// no `--` command, no whitespace.
pub fn is_image_reference(text: &str) -> bool {
    !text.is_empty() && !text.contains("://") && !text.starts_with('-') && !text.contains(char::is_whitespace)
}

/// The launcher for an image workload in `namespace` of the cluster. `--secret` values are read
/// from the secrets provider at every start and go into the workload's Kubernetes Secret, which
/// the StatefulSet references (never a plain env value in it).
pub async fn launcher(state: &StateDir, config: &RunConfig, namespace: &str) -> anyhow::Result<Arc<dyn Launch>> {
    let client = default_client().await?;
    let mut launcher = StatefulSetLauncher::for_run_config(client, namespace, config)?;
    if !config.secrets.is_empty() {
        let secrets = SecretsDir::in_state(state)
            .open(&SecretsEnv::from_process())
            .with_context(|| format!("reading the secrets of workload {:?}", config.name))?;
        for (target, value) in secrets.resolve(&config.secrets)? {
            launcher = launcher.secret_env(&target, value.as_str());
        }
    }
    Ok(Arc::new(launcher))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn the_flag_wins_then_toolhive_runtime_then_the_service_host() {
        let in_pod = [("KUBERNETES_SERVICE_HOST", "10.96.0.1")];
        assert_eq!(select_with(None, env(&[])).unwrap(), RuntimeKind::Local);
        assert_eq!(select_with(None, env(&in_pod)).unwrap(), RuntimeKind::Kubernetes);
        assert_eq!(select_with(Some("docker"), env(&in_pod)).unwrap(), RuntimeKind::Local);
        assert_eq!(select_with(Some("kubernetes"), env(&[])).unwrap(), RuntimeKind::Kubernetes);
        let both = [("KUBERNETES_SERVICE_HOST", "10.96.0.1"), ("TOOLHIVE_RUNTIME", "podman")];
        assert_eq!(select_with(None, env(&both)).unwrap(), RuntimeKind::Local);
        assert_eq!(select_with(None, env(&[("TOOLHIVE_RUNTIME", "kubernetes")])).unwrap(), RuntimeKind::Kubernetes);
        let err = format!("{:#}", select_with(Some("kubernets"), env(&[])).unwrap_err());
        assert!(err.contains("--runtime") && err.contains("kubernets"), "{err}");
    }

    #[test]
    fn image_references_are_told_from_other_sources() {
        assert!(is_image_reference("docker.io/mcp/fetch"));
        assert!(is_image_reference("ghcr.io/stackloklabs/gofetch/server:latest"));
        assert!(!is_image_reference("npx://pkg"));
        assert!(!is_image_reference("https://example.com/mcp"));
        assert!(!is_image_reference(""));
    }

    #[test]
    fn the_namespace_comes_from_the_service_account_then_pod_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("namespace");
        assert_eq!(namespace_with(&file, env(&[])), "default");
        assert_eq!(namespace_with(&file, env(&[("POD_NAMESPACE", "team")])), "team");
        std::fs::write(&file, "toolhive-deployment\n").unwrap();
        assert_eq!(namespace_with(&file, env(&[("POD_NAMESPACE", "team")])), "toolhive-deployment");
    }
}
