//! The MCPRemoteProxy reconciler: a proxy Deployment in front of a remote MCP server. Like the
//! MCPServer reconciler it recomputes the children from the normalised spec, applies them with
//! server-side apply, repairs drift through watches on the children, and reports `status`
//! (phase, url, message, observedGeneration, `Ready`), writing nothing when nothing changed.

mod apply;
pub mod desired;
pub mod names;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::crd::mcpremoteproxy::{MCPRemoteProxy, MCPRemoteProxyStatus};
use crate::normalize::Normalize;
use crate::reconcile::labels::proxy_selector_string;
use crate::reconcile::{Context, FIELD_MANAGER, WatchScope};
use status::Outcome;

/// Requeue period once the proxy runs: a safety net, since the watches catch real changes.
const RESYNC_RUNNING: Duration = Duration::from_secs(300);
/// Requeue period while waiting (pod reasons change without any watched object changing).
const RESYNC_WAITING: Duration = Duration::from_secs(20);
/// Retry period after an API error.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(15);
/// Longest pod message copied into `status.message`.
const MAX_WAITING_CHARS: usize = 200;
/// Most proxy pods read to explain why none is ready.
const MAX_PODS_READ: u32 = 20;

/// Failures of one reconcile; the controller retries after [`RETRY_AFTER_ERROR`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the apiserver failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object is cluster-scoped or nameless (cannot happen for a served MCPRemoteProxy).
    #[error("the MCPRemoteProxy has no {0}")]
    MissingMeta(&'static str),
}

/// Runs the MCPRemoteProxy controller(s) for `scope` until `shutdown` resolves, then lets the
/// reconciles in flight finish. Shares [`Context`] (client, settings, events, metrics) with
/// the MCPServer controller.
pub async fn run(
    ctx: Arc<Context>,
    scope: WatchScope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let namespaces: Vec<Option<String>> = match scope {
        WatchScope::Cluster => vec![None],
        WatchScope::Namespaces(names) => names.into_iter().map(Some).collect(),
    };
    let controllers = namespaces.into_iter().map(|namespace| {
        let ctx = Arc::clone(&ctx);
        let shutdown = shutdown.clone();
        async move {
            let client = ctx.client.clone();
            let children = watcher::Config::default().labels(&names::children_selector());
            let proxies = child_api::<MCPRemoteProxy>(&client, namespace.as_deref());
            let controller = Controller::new(proxies, watcher::Config::default())
                .owns(child_api::<Deployment>(&client, namespace.as_deref()), children.clone())
                .owns(child_api::<ConfigMap>(&client, namespace.as_deref()), children.clone())
                .owns(child_api::<Service>(&client, namespace.as_deref()), children.clone())
                .owns(child_api::<ServiceAccount>(&client, namespace.as_deref()), children.clone())
                .owns(child_api::<Role>(&client, namespace.as_deref()), children.clone())
                .owns(child_api::<RoleBinding>(&client, namespace.as_deref()), children);
            controller
                .graceful_shutdown_on(shutdown)
                .run(reconcile, error_policy, Arc::clone(&ctx))
                .for_each(|result| async move {
                    match result {
                        Ok((object, _)) => {
                            tracing::debug!(name = %object.name, namespace = ?object.namespace, "reconciled remote proxy")
                        }
                        Err(e) => tracing::debug!(error = %e, "remote proxy controller"),
                    }
                })
                .await;
        }
    });
    futures::future::join_all(controllers).await;
}

/// `K` in one namespace, or in all.
fn child_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        None => Api::all(client.clone()),
        Some(ns) => Api::namespaced(client.clone(), ns),
    }
}

fn error_policy(proxy: Arc<MCPRemoteProxy>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure();
    tracing::warn!(name = %proxy.name_any(), namespace = ?proxy.namespace(), %error, "remote proxy reconcile failed");
    Action::requeue(RETRY_AFTER_ERROR)
}

/// One reconcile of one MCPRemoteProxy.
pub async fn reconcile(proxy: Arc<MCPRemoteProxy>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.metrics.reconcile();
    if proxy.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the children.
        return Ok(Action::await_change());
    }
    let namespace = proxy.namespace().ok_or(Error::MissingMeta("namespace"))?;
    let uid = proxy.uid().ok_or(Error::MissingMeta("uid"))?;
    let name = proxy.name_any();
    let reference = proxy.object_ref(&());

    if proxy.status.as_ref().and_then(|s| s.observed_generation) != proxy.metadata.generation {
        for conflict in proxy.spec.normalize().conflicts {
            publish(&ctx, &reference, EventType::Warning, "SpecConflict", "Normalize", conflict.to_string()).await;
        }
    }

    let outcome = match desired::desired(&proxy, &ctx.settings) {
        Err(e) => Outcome::Invalid(e.to_string()),
        Ok(want) => match apply::apply_all(&ctx.client, &namespace, &want, &uid).await? {
            apply::Applied::Conflict { kind, name } => Outcome::NameConflict { kind, name },
            apply::Applied::Done(deployment) => {
                let status = deployment.status.as_ref();
                let ready_replicas = status.and_then(|s| s.ready_replicas).unwrap_or(0);
                let available = status
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Available" && c.status == "True"))
                    && status.and_then(|s| s.available_replicas).unwrap_or(0) > 0;
                let waiting = if available || !want.unapplied.blocking.is_empty() {
                    None
                } else {
                    pod_waiting_reason(&ctx.client, &namespace, &name).await?
                };
                Outcome::Applied {
                    url: names::proxy_url(&name, &namespace, want.proxy_port),
                    ready_replicas,
                    available,
                    waiting,
                    unapplied: want.unapplied,
                }
            }
        },
    };

    let before = status::ready_condition(proxy.status.as_ref()).map(|c| (c.status.clone(), c.reason.clone()));
    let next = status::compute(&proxy, &outcome, crate::reconcile::status::now_seconds());
    if proxy.status.as_ref() != Some(&next) {
        write_status(&ctx.client, &namespace, &name, &next).await?;
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
        Outcome::Applied { ref unapplied, .. } if !unapplied.blocking.is_empty() => Action::requeue(RESYNC_RUNNING),
        Outcome::Applied { .. } => Action::requeue(RESYNC_WAITING),
        // Nothing to do until the spec (or the conflicting object's owner) changes.
        Outcome::NameConflict { .. } | Outcome::Invalid(_) => Action::requeue(RESYNC_RUNNING),
    })
}

/// Why the proxy pods are not ready, in words stable enough that the status does not flap
/// between kubelet's retry states.
async fn pod_waiting_reason(client: &Client, namespace: &str, name: &str) -> Result<Option<String>, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods.list(&ListParams::default().labels(&proxy_selector_string(name)).limit(MAX_PODS_READ)).await?;
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

async fn write_status(
    client: &Client,
    namespace: &str,
    name: &str,
    status: &MCPRemoteProxyStatus,
) -> Result<(), Error> {
    let api: Api<MCPRemoteProxy> = Api::namespaced(client.clone(), namespace);
    let body = json!({
        "apiVersion": MCPRemoteProxy::api_version(&()),
        "kind": MCPRemoteProxy::kind(&()),
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
