//! Watching the MCP pod: waiting (bounded) until `<name>-0` runs the container the launcher
//! asked for, failing fast on states that will not heal by waiting (a bad image, a crash loop),
//! and noticing afterwards when that pod is replaced or its container restarts.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::Api;
use tokio::time::Instant;

use super::KubeError;
use super::manifest::{CONTAINER, ServerSpec};

/// How often the pod is read while waiting and while attached. Polling a single named object
/// keeps this bounded and needs only `get` on pods.
const POLL: Duration = Duration::from_millis(500);
const WATCH_POLL: Duration = Duration::from_secs(2);

/// Waiting reasons that mean the container will not start without someone changing something.
const HOPELESS: &[&str] =
    &["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CreateContainerConfigError"];

/// The pod incarnation the launcher attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub name: String,
    pub uid: String,
    pub restarts: i32,
}

fn container_status(pod: &Pod) -> Option<&ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.iter().find(|c| c.name == CONTAINER)
}

/// True when the pod was made from the StatefulSet as now applied (same image, args, env), so a
/// pod left over from an older spec is not attached to while the controller replaces it.
fn matches_spec(pod: &Pod, spec: &ServerSpec) -> bool {
    let Some(c) = pod.spec.as_ref().and_then(|s| s.containers.iter().find(|c| c.name == CONTAINER)) else {
        return false;
    };
    let args = c.args.clone().unwrap_or_default();
    let (refs, plain): (Vec<_>, Vec<_>) = c.env.iter().flatten().partition(|e| e.value_from.is_some());
    let env: Vec<(String, String)> =
        plain.iter().map(|e| (e.name.clone(), e.value.clone().unwrap_or_default())).collect();
    let wanted: Vec<(String, String)> =
        spec.env.iter().filter(|(k, _)| !spec.secret_env.contains(k)).cloned().collect();
    // `--secret` variables: referenced from the workload's Secret, in order.
    let refs: Vec<&str> = refs.iter().map(|e| e.name.as_str()).collect();
    let secret_env: Vec<&str> = spec.secret_env.iter().map(String::as_str).collect();
    c.image.as_deref() == Some(spec.image.as_str()) && args == spec.args && env == wanted && refs == secret_env
}

/// Waits until pod `pod_name` runs container `mcp` from `spec`.
pub async fn wait_running(
    pods: &Api<Pod>,
    pod_name: &str,
    spec: &ServerSpec,
    limit: Duration,
) -> Result<PodRef, KubeError> {
    let deadline = Instant::now() + limit;
    let mut last = String::from("the pod does not exist yet");
    loop {
        let pod = pods.get_opt(pod_name).await.map_err(|source| KubeError::Api { what: "read the pod", source })?;
        if let Some(pod) = pod {
            let deleting = pod.metadata.deletion_timestamp.is_some();
            let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
            let status = container_status(&pod);
            if let Some(waiting) = status.and_then(|s| s.state.as_ref()?.waiting.as_ref()) {
                let reason = waiting.reason.clone().unwrap_or_default();
                let message = waiting.message.clone().unwrap_or_default();
                if HOPELESS.contains(&reason.as_str()) && matches_spec(&pod, spec) {
                    return Err(KubeError::NotStarting { pod: pod_name.into(), reason, message });
                }
                last = format!("container {CONTAINER} is waiting: {reason} {message}");
            } else if !deleting && matches_spec(&pod, spec) {
                if phase == "Failed" || phase == "Succeeded" {
                    return Err(KubeError::NotStarting {
                        pod: pod_name.into(),
                        reason: phase,
                        message: "the pod ended".into(),
                    });
                }
                let running = status.and_then(|s| s.state.as_ref()?.running.as_ref()).is_some();
                if phase == "Running" && running {
                    return Ok(PodRef {
                        name: pod_name.into(),
                        uid: pod.metadata.uid.clone().unwrap_or_default(),
                        restarts: status.map_or(0, |s| s.restart_count),
                    });
                }
                last = format!("phase {phase}");
            } else {
                last = "an older pod is being replaced".into();
            }
        }
        if Instant::now() + POLL > deadline {
            return Err(KubeError::Timeout { pod: pod_name.into(), waited: limit, last });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Resolves with a sentence once the pod attached to is gone, replaced, or its container
/// restarted or stopped. A failing read is retried: a blip of the apiserver is no exit.
pub async fn changed(pods: Api<Pod>, attached: PodRef) -> String {
    loop {
        tokio::time::sleep(WATCH_POLL).await;
        let pod = match pods.get_opt(&attached.name).await {
            Ok(pod) => pod,
            Err(error) => {
                tracing::debug!(pod = %attached.name, %error, "cannot read the MCP pod; will retry");
                continue;
            }
        };
        let Some(pod) = pod else {
            return format!("pod {} was deleted", attached.name);
        };
        if pod.metadata.uid.as_deref() != Some(attached.uid.as_str()) {
            return format!("pod {} was replaced", attached.name);
        }
        let Some(status) = container_status(&pod) else { continue };
        if status.restart_count != attached.restarts {
            return format!("container {CONTAINER} in pod {} restarted", attached.name);
        }
        if let Some(t) = status.state.as_ref().and_then(|s| s.terminated.as_ref()) {
            return format!("container {CONTAINER} in pod {} exited with status {}", attached.name, t.exit_code);
        }
    }
}
