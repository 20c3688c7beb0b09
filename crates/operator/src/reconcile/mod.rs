//! The MCPServer reconciler: recompute the children from the normalised spec, apply them with
//! server-side apply, and report `status` (phase, url, message, observedGeneration, `Ready`),
//! writing nothing when nothing changed.

mod apply;
pub mod desired;
pub mod labels;
pub mod metrics;
pub mod status;
pub mod workload;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

pub use apply::owned_by;
pub use desired::{DesiredError, Settings};
pub use labels::FIELD_MANAGER;
pub use metrics::Metrics;

use crate::crd::mcpserver::{MCPServer, MCPServerStatus};
use crate::normalize::Normalize;
use status::Outcome;

/// Requeue period once the proxy runs: a safety net, since the watches catch real changes.
const RESYNC_RUNNING: Duration = Duration::from_secs(300);
/// Requeue period while waiting (pod reasons change without any watched object changing).
const RESYNC_WAITING: Duration = Duration::from_secs(20);
/// Retry period after an API error.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(15);
/// Longest pod message copied into `status.message`.
const MAX_WAITING_CHARS: usize = 200;

/// Failures of one reconcile; the controller retries after [`RETRY_AFTER_ERROR`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the apiserver failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object is cluster-scoped or nameless (cannot happen for a served MCPServer).
    #[error("the MCPServer has no {0}")]
    MissingMeta(&'static str),
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Operator settings shaping the children.
    pub settings: Settings,
    /// Event recorder (`events.k8s.io/v1`), built once.
    pub recorder: Recorder,
    /// Counters served on `/metrics`.
    pub metrics: Arc<Metrics>,
}

impl Context {
    /// A context whose events name `instance` (the pod name) as the reporting instance.
    pub fn new(client: Client, settings: Settings, instance: Option<String>, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter { controller: FIELD_MANAGER.to_string(), instance };
        let recorder = Recorder::new(client.clone(), reporter);
        Context { client, settings, recorder, metrics }
    }
}

/// Which namespaces to watch: every namespace, or the listed ones (`WATCH_NAMESPACE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchScope {
    /// The whole cluster.
    Cluster,
    /// Only these namespaces.
    Namespaces(Vec<String>),
}

impl WatchScope {
    /// Parses `WATCH_NAMESPACE`: unset or blank means the cluster, else a comma list.
    pub fn from_env_value(value: Option<&str>) -> Self {
        let names: Vec<String> =
            value.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
        if names.is_empty() { WatchScope::Cluster } else { WatchScope::Namespaces(names) }
    }
}

/// Runs the MCPServer controller(s) for `scope` until `shutdown` resolves, then lets the
/// reconciles in flight finish.
pub async fn run(
    ctx: Arc<Context>,
    scope: WatchScope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let apis: Vec<Option<String>> = match scope {
        WatchScope::Cluster => vec![None],
        WatchScope::Namespaces(names) => names.into_iter().map(Some).collect(),
    };
    let controllers = apis.into_iter().map(|namespace| {
        let ctx = Arc::clone(&ctx);
        let shutdown = shutdown.clone();
        async move {
            let client = ctx.client.clone();
            let children = watcher::Config::default().labels(&format!("{}=true", labels::TOOLHIVE_LABEL));
            let controller = match &namespace {
                None => Controller::new(Api::<MCPServer>::all(client.clone()), watcher::Config::default())
                    .owns(Api::<Deployment>::all(client.clone()), children.clone())
                    .owns(Api::<ConfigMap>::all(client.clone()), children.clone())
                    .owns(Api::<Service>::all(client.clone()), children.clone())
                    .owns(Api::<ServiceAccount>::all(client.clone()), children.clone())
                    .owns(Api::<Role>::all(client.clone()), children.clone())
                    .owns(Api::<RoleBinding>::all(client.clone()), children),
                Some(ns) => {
                    Controller::new(Api::<MCPServer>::namespaced(client.clone(), ns), watcher::Config::default())
                        .owns(Api::<Deployment>::namespaced(client.clone(), ns), children.clone())
                        .owns(Api::<ConfigMap>::namespaced(client.clone(), ns), children.clone())
                        .owns(Api::<Service>::namespaced(client.clone(), ns), children.clone())
                        .owns(Api::<ServiceAccount>::namespaced(client.clone(), ns), children.clone())
                        .owns(Api::<Role>::namespaced(client.clone(), ns), children.clone())
                        .owns(Api::<RoleBinding>::namespaced(client.clone(), ns), children)
                }
            };
            controller
                .graceful_shutdown_on(shutdown)
                .run(reconcile, error_policy, Arc::clone(&ctx))
                .for_each(|result| async move {
                    match result {
                        Ok((object, _)) => {
                            tracing::debug!(name = %object.name, namespace = ?object.namespace, "reconciled")
                        }
                        Err(e) => tracing::debug!(error = %e, "controller"),
                    }
                })
                .await;
        }
    });
    futures::future::join_all(controllers).await;
}

fn error_policy(server: Arc<MCPServer>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure();
    tracing::warn!(name = %server.name_any(), namespace = ?server.namespace(), %error, "reconcile failed");
    Action::requeue(RETRY_AFTER_ERROR)
}

/// One reconcile of one MCPServer.
pub async fn reconcile(server: Arc<MCPServer>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconcile();
    if server.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the children.
        return Ok(Action::await_change());
    }
    let namespace = server.namespace().ok_or(Error::MissingMeta("namespace"))?;
    let uid = server.uid().ok_or(Error::MissingMeta("uid"))?;
    let reference = server.object_ref(&());
    let new_generation = server.status.as_ref().and_then(|s| s.observed_generation) != server.metadata.generation;

    if new_generation {
        for conflict in server.spec.normalize().conflicts {
            publish(&ctx, &reference, EventType::Warning, "SpecConflict", "Normalize", conflict.to_string()).await;
        }
    }

    let outcome = match desired::desired(&server, &ctx.settings) {
        Err(e) => Outcome::Invalid(e.to_string()),
        Ok(want) => match apply::apply_all(&ctx.client, &namespace, &want, &uid).await? {
            apply::Applied::Conflict { kind, name } => Outcome::NameConflict { kind, name },
            apply::Applied::Done(deployment) => {
                let url = labels::proxy_url(&server.name_any(), &namespace, want.proxy_port);
                observe(&ctx.client, &namespace, &server.name_any(), &deployment, url).await?
            }
        },
    };

    let before = status::ready_condition(server.status.as_ref()).map(|c| (c.status.clone(), c.reason.clone()));
    let next = status::compute(&server, &outcome, status::now_seconds());
    if server.status.as_ref() != Some(&next) {
        write_status(&ctx.client, &namespace, &server.name_any(), &next).await?;
    }
    let after = status::ready_condition(Some(&next)).map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()));
    if let Some((ready, reason, message)) = after
        && before.as_ref().map(|(s, r)| (s, r)) != Some((&ready, &reason))
    {
        let kind =
            if ready == "True" || reason == "DeploymentUnavailable" { EventType::Normal } else { EventType::Warning };
        publish(&ctx, &reference, kind, &reason, "Reconcile", message).await;
    }

    Ok(match outcome {
        Outcome::Applied { available: true, .. } => Action::requeue(RESYNC_RUNNING),
        Outcome::Applied { .. } => Action::requeue(RESYNC_WAITING),
        // Nothing to do until the spec (or the conflicting object's owner) changes.
        Outcome::NameConflict { .. } | Outcome::Invalid(_) => Action::requeue(RESYNC_RUNNING),
    })
}

/// The proxy's state, from the applied Deployment and, while it is not available, its pods.
async fn observe(
    client: &Client,
    namespace: &str,
    name: &str,
    deployment: &Deployment,
    url: String,
) -> Result<Outcome, Error> {
    let status = deployment.status.as_ref();
    let ready_replicas = status.and_then(|s| s.ready_replicas).unwrap_or(0);
    let available = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Available" && c.status == "True"))
        && status.and_then(|s| s.available_replicas).unwrap_or(0) > 0;
    let waiting = if available { None } else { pod_waiting_reason(client, namespace, name).await? };
    Ok(Outcome::Applied { url, ready_replicas, available, waiting })
}

/// Why the proxy pods are not ready, in words stable enough that the status does not flap
/// between kubelet's retry states.
async fn pod_waiting_reason(client: &Client, namespace: &str, name: &str) -> Result<Option<String>, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods.list(&ListParams::default().labels(&labels::proxy_selector_string(name)).limit(20)).await?;
    if list.items.is_empty() {
        return Ok(Some("no proxy pod yet".to_string()));
    }
    for pod in &list.items {
        let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
        for cs in statuses.into_iter().flatten() {
            let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else { continue };
            let reason = waiting.reason.clone().unwrap_or_default();
            let text = match reason.as_str() {
                "ErrImagePull" | "ImagePullBackOff" => format!("image {} cannot be pulled", cs.image),
                "CrashLoopBackOff" => format!("container {} keeps crashing", cs.name),
                "" | "ContainerCreating" | "PodInitializing" => continue,
                other => format!("container {}: {other}", cs.name),
            };
            return Ok(Some(text.chars().take(MAX_WAITING_CHARS).collect()));
        }
        if let Some(cond) = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled" && c.status == "False"))
        {
            return Ok(Some(format!("pod not scheduled: {}", cond.reason.clone().unwrap_or_default())));
        }
    }
    Ok(None)
}

async fn write_status(client: &Client, namespace: &str, name: &str, status: &MCPServerStatus) -> Result<(), Error> {
    let api: Api<MCPServer> = Api::namespaced(client.clone(), namespace);
    let body = json!({
        "apiVersion": MCPServer::api_version(&()),
        "kind": MCPServer::kind(&()),
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body)).await?;
    Ok(())
}

async fn publish(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event =
        Event { type_, reason: reason.to_string(), note: Some(note), action: action.to_string(), secondary: None };
    // An event that cannot be written must not fail the reconcile.
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, reason, "could not publish event");
    }
}

#[cfg(test)]
mod tests {
    use super::WatchScope;

    #[test]
    fn watch_namespace_is_a_comma_list_and_blank_means_cluster() {
        assert_eq!(WatchScope::from_env_value(None), WatchScope::Cluster);
        assert_eq!(WatchScope::from_env_value(Some(" , ")), WatchScope::Cluster);
        assert_eq!(
            WatchScope::from_env_value(Some("a, b,,c")),
            WatchScope::Namespaces(vec!["a".into(), "b".into(), "c".into()])
        );
    }
}
