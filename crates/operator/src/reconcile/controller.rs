//! The controller plumbing the MCPServer and MCPRemoteProxy reconcilers share: the context,
//! the watch scope, the errors, one Controller per watched namespace with watches on the
//! children, the error policy and the requeue periods.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::desired::Settings;
use super::labels::FIELD_MANAGER;
use super::metrics::Metrics;
use super::policy::{PolicyRefs, Referencing};
use crate::crd::authzconfig::MCPAuthzConfig;
use crate::crd::externalauth::MCPExternalAuthConfig;
use crate::crd::oidcconfig::MCPOIDCConfig;
use crate::crd::telemetryconfig::MCPTelemetryConfig;
use crate::crd::toolconfig::MCPToolConfig;

/// Requeue period once the proxy runs: a safety net, since the watches catch real changes.
const RESYNC_RUNNING: Duration = Duration::from_secs(300);
/// Requeue period while waiting (pod reasons change without any watched object changing).
const RESYNC_WAITING: Duration = Duration::from_secs(20);
/// Retry period after an API error.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(15);

/// Failures of one reconcile; the controller retries after [`RETRY_AFTER_ERROR`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the apiserver failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object is cluster-scoped or nameless (cannot happen for a served object).
    #[error("the {kind} has no {field}")]
    MissingMeta {
        /// Kind of the object.
        kind: String,
        /// The field it lacks.
        field: &'static str,
    },
}

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Operator settings shaping the children.
    pub settings: Settings,
    /// Who publishes the events (`events.k8s.io/v1`): the operator and its pod.
    pub reporter: Reporter,
    /// Counters served on `/metrics`.
    pub metrics: Arc<Metrics>,
}

impl Context {
    /// A context whose events name `instance` (the pod name) as the reporting instance.
    pub fn new(client: Client, settings: Settings, instance: Option<String>, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter { controller: FIELD_MANAGER.to_string(), instance };
        Context { client, settings, reporter, metrics }
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

/// Runs `reconcile` for every `K` in `scope`, woken by changes to `K`, to its children
/// matching `children_selector`, and to the protection objects it references (MCPOIDCConfig,
/// MCPAuthzConfig, MCPToolConfig, the authorization ConfigMap, MCPExternalAuthConfig,
/// MCPTelemetryConfig), until `shutdown` resolves; then
/// lets the reconciles in flight finish.
pub async fn run<K, R, Fut>(
    ctx: Arc<Context>,
    scope: WatchScope,
    children_selector: String,
    reconcile: R,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Referencing
        + Send
        + Sync
        + 'static,
    R: FnMut(Arc<K>, Arc<Context>) -> Fut + Clone,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let controllers = namespaces(scope).into_iter().map(|namespace| {
        let (ctx, shutdown, reconcile) = (Arc::clone(&ctx), shutdown.clone(), reconcile.clone());
        let children = watcher::Config::default().labels(&children_selector);
        async move {
            let ns = namespace.as_deref();
            let client = &ctx.client;
            let controller = Controller::new(api::<K>(client, ns), watcher::Config::default());
            let parents = controller.store();
            let controller = controller
                .watches(
                    api::<MCPOIDCConfig>(client, ns),
                    watcher::Config::default(),
                    referrers(&parents, |r, name| r.oidc_config_ref.is_some_and(|o| o.name == name)),
                )
                .watches(
                    api::<MCPAuthzConfig>(client, ns),
                    watcher::Config::default(),
                    referrers(&parents, |r, name| r.authz_config_ref.is_some_and(|a| a.name == name)),
                )
                .watches(
                    api::<MCPToolConfig>(client, ns),
                    watcher::Config::default(),
                    referrers(&parents, |r, name| r.tool_config_ref.is_some_and(|t| t.name == name)),
                )
                .watches(
                    api::<MCPExternalAuthConfig>(client, ns),
                    watcher::Config::default(),
                    referrers(&parents, |r, name| r.external_auth_config_ref.is_some_and(|e| e.name == name)),
                )
                .watches(
                    api::<MCPTelemetryConfig>(client, ns),
                    watcher::Config::default(),
                    referrers(&parents, |r, name| r.telemetry_config_ref.is_some_and(|t| t.name == name)),
                )
                .watches(
                    api::<ConfigMap>(client, ns),
                    watcher::Config::default(),
                    referrers(&parents, |r, name| r.authz_config_map() == Some(name)),
                )
                .owns(api::<Deployment>(client, ns), children.clone())
                .owns(api::<ConfigMap>(client, ns), children.clone())
                .owns(api::<Service>(client, ns), children.clone())
                .owns(api::<ServiceAccount>(client, ns), children.clone())
                .owns(api::<Role>(client, ns), children.clone())
                .owns(api::<RoleBinding>(client, ns), children);
            drive(controller, reconcile, Arc::clone(&ctx), shutdown).await;
        }
    });
    futures::future::join_all(controllers).await;
}

/// A mapper from a changed object of kind `O` to the parents in its namespace whose
/// protection fields name it (`names(refs, object name)`), read from the controller's cache.
fn referrers<K, O>(
    parents: &Store<K>,
    names: fn(&PolicyRefs<'_>, &str) -> bool,
) -> impl Fn(O) -> Vec<ObjectRef<K>> + Send + Sync + 'static
where
    K: Resource<DynamicType = ()> + Referencing + Clone + Send + Sync + 'static,
    O: Resource,
{
    same_namespace(parents, move |p: &K, name| names(&p.policy_refs(), name))
}

/// The namespaces one Controller each watches: `None` is the whole cluster.
pub(crate) fn namespaces(scope: WatchScope) -> Vec<Option<String>> {
    match scope {
        WatchScope::Cluster => vec![None],
        WatchScope::Namespaces(names) => names.into_iter().map(Some).collect(),
    }
}

/// Runs a built `controller` until `shutdown`, with the shared error policy, logging each result.
pub(crate) async fn drive<K, R, Fut>(
    controller: Controller<K>,
    reconcile: R,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    R: FnMut(Arc<K>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            let kind = K::kind(&());
            match result {
                Ok((object, _)) => {
                    tracing::debug!(%kind, name = %object.name, namespace = ?object.namespace, "reconciled")
                }
                Err(e) => tracing::debug!(%kind, error = %e, "controller"),
            }
        })
        .await;
}

/// A mapper from a changed object of kind `O` to the objects of kind `K` in its namespace (from
/// the controller's cache) for which `names(k, object name)` holds.
pub(crate) fn same_namespace<K, O>(
    cache: &Store<K>,
    names: impl Fn(&K, &str) -> bool + Send + Sync + 'static,
) -> impl Fn(O) -> Vec<ObjectRef<K>> + Send + Sync + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    O: Resource,
{
    let cache = cache.clone();
    move |object: O| {
        let (namespace, name) = (object.meta().namespace.clone(), object.meta().name.clone().unwrap_or_default());
        cache
            .state()
            .iter()
            .filter(|k| k.meta().namespace == namespace && names(k, &name))
            .map(|k| ObjectRef::from_obj(&**k))
            .collect()
    }
}

/// `K` in one namespace, or in all.
pub(crate) fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    match namespace {
        None => Api::all(client.clone()),
        Some(ns) => Api::namespaced(client.clone(), ns),
    }
}

pub(crate) fn error_policy<K: Resource<DynamicType = ()>>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failure();
    let kind = K::kind(&());
    tracing::warn!(%kind, name = %object.name_any(), namespace = ?object.namespace(), %error, "reconcile failed");
    Action::requeue(RETRY_AFTER_ERROR)
}

/// When to look again: soon while waiting for the proxy to become available (pod reasons
/// change without any watched object changing), else only as a safety net, since the watches
/// catch real changes (a conflict or invalid spec waits for the spec or the other object).
pub fn requeue(waiting_for_proxy: bool) -> Action {
    Action::requeue(if waiting_for_proxy { RESYNC_WAITING } else { RESYNC_RUNNING })
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
