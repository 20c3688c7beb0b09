//! What a proxy Deployment's state is, read from the applied Deployment and, while it is not
//! available, from its pods: the same for every kind that runs a proxy.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};

/// Longest pod message copied into `status.message`.
const MAX_WAITING_CHARS: usize = 200;
/// Most proxy pods read to explain why none is ready.
const MAX_PODS_READ: u32 = 20;

/// The proxy's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Ready proxy replicas.
    pub ready_replicas: i32,
    /// The Deployment has at least one available replica.
    pub available: bool,
    /// Why it is not available yet, when known (a pod's waiting reason).
    pub waiting: Option<String>,
}

/// The state of the workload of the applied `deployment`, whose pods `selector` (a label
/// selector string) matches; the pods are read only when it is not available and `ask_pods`
/// is true.
pub async fn proxy(
    client: &Client,
    namespace: &str,
    selector: &str,
    deployment: &Deployment,
    ask_pods: bool,
) -> kube::Result<Observed> {
    let status = deployment.status.as_ref();
    let ready_replicas = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let available = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Available" && c.status == "True"))
        && status.and_then(|s| s.available_replicas).unwrap_or(0) > 0;
    let waiting = if available || !ask_pods { None } else { pod_waiting_reason(client, namespace, selector).await? };
    Ok(Observed { ready_replicas, available, waiting })
}

/// Why the proxy pods are not ready, in words stable enough that the status does not flap
/// between kubelet's retry states.
async fn pod_waiting_reason(client: &Client, namespace: &str, selector: &str) -> kube::Result<Option<String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods.list(&ListParams::default().labels(selector).limit(MAX_PODS_READ)).await?;
    if list.items.is_empty() {
        return Ok(Some("no proxy pod yet".to_string()));
    }
    for pod in &list.items {
        let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
        for cs in statuses.into_iter().flatten() {
            let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else { continue };
            let text = match waiting.reason.as_deref().unwrap_or_default() {
                "ErrImagePull" | "ImagePullBackOff" => format!("image {} cannot be pulled", cs.image),
                "CrashLoopBackOff" => format!("container {} keeps crashing", cs.name),
                "" | "ContainerCreating" | "PodInitializing" => continue,
                other => format!("container {}: {other}", cs.name),
            };
            return Ok(Some(text.chars().take(MAX_WAITING_CHARS).collect()));
        }
        let unscheduled = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled" && c.status == "False"));
        if let Some(cond) = unscheduled {
            return Ok(Some(format!("pod not scheduled: {}", cond.reason.clone().unwrap_or_default())));
        }
    }
    Ok(None)
}
