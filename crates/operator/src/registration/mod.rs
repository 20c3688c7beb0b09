//! The MCPServerRegistration reconciler (seed 004): it creates nothing. Each reconcile checks
//! `spec.targetRef` ([`route::target`]), reads the HTTPRoute it names, resolves the route's
//! backend Service (`ExternalName` included) to the server's URL with `spec.path`, asks that
//! server for its tools as an MCP client ([`probe`]) with the `credentialRef` token, and writes
//! the `Ready` condition and `discoveredTools` ([`status`]) when they changed. Watches on
//! HTTPRoutes, Services and Secrets re-reconcile a registration when its route, backend or
//! credential changes; a periodic requeue follows the server's tool list.

pub mod probe;
pub mod route;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::DynamicObject;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};

use crate::crd::registration::{EnabledState, MCPServerRegistration, MCPServerRegistrationSpec};
use crate::normalize::Normalize;
use crate::reconcile::policy::fetch::get;
use crate::reconcile::{Context, Error, WatchScope, controller, outcome, report};
use route::{Key, Problem};
use status::Verdict;

/// How often a registration is looked at again to follow its server's tools.
const RESYNC: Duration = Duration::from_secs(60);
/// `spec.path` when unset (the normalized spec always has it).
const DEFAULT_PATH: &str = "/mcp";
/// Key of the credential Secret when `credentialRef.key` is unset.
pub const DEFAULT_CREDENTIAL_KEY: &str = "token";

/// The backend Service each registration resolved to last, so a Service change re-reconciles
/// exactly the registrations behind it. One entry per live registration.
type Backends = Arc<Mutex<HashMap<Key, Key>>>;

/// Runs the MCPServerRegistration controller(s) for `scope` until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    scope: WatchScope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let controllers = controller::namespaces(scope).into_iter().map(|ns| {
        let (ctx, ns) = (Arc::clone(&ctx), ns.as_deref().map(str::to_string));
        let client = &ctx.client;
        let backends: Backends = Arc::default();
        let c = Controller::new(
            controller::api::<MCPServerRegistration>(client, ns.as_deref()),
            watcher::Config::default(),
        );
        let registrations = c.store();
        let ar = route::httproute_resource();
        let routes: Api<DynamicObject> = match ns.as_deref() {
            None => Api::all_with(client.clone(), &ar),
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        };
        let c = c
            .watches_with(routes, ar, watcher::Config::default(), targeting(&registrations))
            .watches(
                controller::api::<Service>(client, ns.as_deref()),
                watcher::Config::default(),
                behind(&registrations, Arc::clone(&backends)),
            )
            .watches(
                controller::api::<Secret>(client, ns.as_deref()),
                watcher::Config::default(),
                controller::same_namespace(&registrations, |r: &MCPServerRegistration, name| {
                    r.spec.credential_ref.as_ref().is_some_and(|c| c.name == name)
                }),
            );
        let each = move |r: Arc<MCPServerRegistration>, ctx: Arc<Context>| reconcile(r, ctx, Arc::clone(&backends));
        controller::drive(c, each, Arc::clone(&ctx), shutdown.clone())
    });
    futures::future::join_all(controllers).await;
}

/// The registration's own key.
fn key_of(r: &MCPServerRegistration) -> Key {
    Key { namespace: r.namespace().unwrap_or_default(), name: r.name_any() }
}

/// Maps a changed HTTPRoute to the registrations that target it.
fn targeting(
    registrations: &Store<MCPServerRegistration>,
) -> impl Fn(DynamicObject) -> Vec<ObjectRef<MCPServerRegistration>> + Send + Sync + 'static {
    let cache = registrations.clone();
    move |changed: DynamicObject| {
        let changed = Key { namespace: changed.namespace().unwrap_or_default(), name: changed.name_any() };
        cache
            .state()
            .iter()
            .filter(|r| route::target(&key_of(r).namespace, &r.spec.target_ref).is_ok_and(|t| t == changed))
            .map(|r| ObjectRef::from_obj(&**r))
            .collect()
    }
}

/// Maps a changed Service to the registrations whose route last resolved to it.
fn behind(
    registrations: &Store<MCPServerRegistration>,
    backends: Backends,
) -> impl Fn(Service) -> Vec<ObjectRef<MCPServerRegistration>> + Send + Sync + 'static {
    let cache = registrations.clone();
    move |changed: Service| {
        let changed = Key { namespace: changed.namespace().unwrap_or_default(), name: changed.name_any() };
        let backends = backends.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .state()
            .iter()
            .filter(|r| backends.get(&key_of(r)) == Some(&changed))
            .map(|r| ObjectRef::from_obj(&**r))
            .collect()
    }
}

/// One reconcile of one MCPServerRegistration.
pub async fn reconcile(
    registration: Arc<MCPServerRegistration>,
    ctx: Arc<Context>,
    backends: Backends,
) -> Result<Action, Error> {
    let key = key_of(&registration);
    let forget = || {
        backends.lock().unwrap_or_else(PoisonError::into_inner).remove(&key);
    };
    let Some(registration) = report::fresh(&ctx, &*registration).await? else {
        forget();
        return Ok(Action::await_change());
    };
    let normalized = registration.spec.normalize();
    let observed = registration.status.as_ref().and_then(|s| s.observed_generation);
    let Some(run) = report::begin(&ctx, &registration, observed, || normalized.conflicts.clone()).await? else {
        forget();
        return Ok(Action::await_change());
    };
    let (verdict, backend) = examine(&ctx.client, &run.namespace, &normalized.spec).await?;
    {
        let mut map = backends.lock().unwrap_or_else(PoisonError::into_inner);
        match backend {
            Some(b) => map.insert(key, b),
            None => map.remove(&key),
        };
    }
    let before = registration.status.as_ref();
    let next = status::compute(&verdict, before, registration.meta().generation, outcome::now_seconds());
    run.finish(&ctx, before, &next, status::ready_condition).await?;
    Ok(Action::requeue(RESYNC))
}

/// Follows `spec` (normalized) from the route to the server's tools. Returns the verdict and,
/// when the route named one, the backend Service. Only apiserver failures are errors; anything
/// wrong with the objects or the server is a `NotReady` verdict.
pub async fn examine(
    client: &Client,
    namespace: &str,
    spec: &MCPServerRegistrationSpec,
) -> Result<(Verdict, Option<Key>), kube::Error> {
    let (resolved, backend) = resolve(&ApiObjects(client), namespace, spec).await?;
    let verdict = match resolved {
        Ok(r) => match probe::count_tools(&r.url, r.token.as_deref()).await {
            Ok(tools) => Verdict::Ready { url: r.url, tools, prefix: spec.prefix.clone() },
            Err(p) => Verdict::NotReady(p),
        },
        Err(p) => Verdict::NotReady(p),
    };
    Ok((verdict, backend))
}

/// Where [`resolve`] reads the objects a registration names: the apiserver (the reconciler,
/// [`ApiObjects`]) or a watch cache (the gateway). `None` is "not found".
pub trait Objects: Sync {
    /// The HTTPRoute `key`.
    fn route(&self, key: &Key) -> impl std::future::Future<Output = Result<Option<DynamicObject>, kube::Error>> + Send;
    /// The Service `key`.
    fn service(&self, key: &Key) -> impl std::future::Future<Output = Result<Option<Service>, kube::Error>> + Send;
    /// The Secret `key`.
    fn secret(&self, key: &Key) -> impl std::future::Future<Output = Result<Option<Secret>, kube::Error>> + Send;
}

/// [`Objects`] read from the apiserver at each call.
pub struct ApiObjects<'a>(pub &'a Client);

impl Objects for ApiObjects<'_> {
    async fn route(&self, key: &Key) -> Result<Option<DynamicObject>, kube::Error> {
        let routes: Api<DynamicObject> =
            Api::namespaced_with(self.0.clone(), &key.namespace, &route::httproute_resource());
        routes.get_opt(&key.name).await.or_else(missing_kind)
    }

    async fn service(&self, key: &Key) -> Result<Option<Service>, kube::Error> {
        get::<Service>(self.0, &key.namespace, Some(&key.name)).await
    }

    async fn secret(&self, key: &Key) -> Result<Option<Secret>, kube::Error> {
        get::<Secret>(self.0, &key.namespace, Some(&key.name)).await
    }
}

/// A registration's server, found: what the reconciler probes and the gateway serves.
#[derive(Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The HTTPRoute it targets (its `<namespace>/<name>` is the gateway's `x-mcp-servername`).
    pub route: Key,
    /// That route's spec (what the gateway reads of it).
    pub route_spec: route::RouteSpec,
    /// The server's MCP endpoint.
    pub url: String,
    /// The `credentialRef` token, sent as a bearer. Never printed.
    pub token: Option<String>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("route", &self.route)
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// Follows `spec` (normalized) of a registration in `namespace` from its `targetRef` through
/// the HTTPRoute and its backend Service (`ExternalName` included) to the server's URL and
/// credential, reading the objects from `objects`. Returns what was found or the problem, and
/// the backend Service when the route named one. Only read failures are errors.
pub async fn resolve(
    objects: &impl Objects,
    namespace: &str,
    spec: &MCPServerRegistrationSpec,
) -> Result<(Result<Resolved, Problem>, Option<Key>), kube::Error> {
    let path = spec.path.as_deref().unwrap_or(DEFAULT_PATH);
    let target = match route::target(namespace, &spec.target_ref) {
        Ok(t) => t,
        Err(p) => return Ok((Err(p), None)),
    };
    if spec.state == Some(EnabledState::Disabled) {
        let p = Problem { reason: "Disabled", message: "spec.state is Disabled: the server is not contacted".into() };
        return Ok((Err(p), None));
    }
    let Some(found) = objects.route(&target).await? else {
        let p = Problem { reason: "RouteNotFound", message: format!("HTTPRoute {target} not found") };
        return Ok((Err(p), None));
    };
    let spec_value = found.data.get("spec").cloned().unwrap_or_default();
    let route_spec: route::RouteSpec = match serde_json::from_value(spec_value) {
        Ok(s) => s,
        Err(e) => {
            let p = Problem { reason: "InvalidRoute", message: format!("HTTPRoute {target} cannot be read: {e}") };
            return Ok((Err(p), None));
        }
    };
    let (service_key, port) = match route::backend(&target, &route_spec, path) {
        Ok(b) => b,
        Err(p) => return Ok((Err(p), None)),
    };
    let backend = Some(service_key.clone());
    let Some(service) = objects.service(&service_key).await? else {
        let p = Problem {
            reason: "BackendNotFound",
            message: format!("Service {service_key} (backend of HTTPRoute {target}) not found"),
        };
        return Ok((Err(p), backend));
    };
    let url = match route::url(&service_key, &service, port, path) {
        Ok(u) => u,
        Err(p) => return Ok((Err(p), backend)),
    };
    let token = match credential(objects, namespace, spec).await? {
        Ok(t) => t,
        Err(p) => return Ok((Err(p), backend)),
    };
    Ok((Ok(Resolved { route: target, route_spec, url, token }), backend))
}

/// A 404 on the route kind itself (Gateway API not installed) reads as "no such route".
fn missing_kind(e: kube::Error) -> Result<Option<DynamicObject>, kube::Error> {
    match &e {
        kube::Error::Api(s) if s.code == 404 => Ok(None),
        _ => Err(e),
    }
}

/// The bearer token of `credentialRef` (key default [`DEFAULT_CREDENTIAL_KEY`]), `None` when
/// no credential is referenced; a missing Secret or key is a `CredentialNotFound` problem.
async fn credential(
    objects: &impl Objects,
    namespace: &str,
    spec: &MCPServerRegistrationSpec,
) -> Result<Result<Option<String>, Problem>, kube::Error> {
    let Some(r) = &spec.credential_ref else { return Ok(Ok(None)) };
    let key = r.key.as_deref().unwrap_or(DEFAULT_CREDENTIAL_KEY);
    let problem = |message: String| Problem { reason: "CredentialNotFound", message };
    let secret_key = Key { namespace: namespace.to_string(), name: r.name.clone() };
    let Some(secret) = objects.secret(&secret_key).await? else {
        return Ok(Err(problem(format!("Secret {namespace}/{} (spec.credentialRef) not found", r.name))));
    };
    let value = secret.data.as_ref().and_then(|d| d.get(key)).map(|b| String::from_utf8_lossy(&b.0).trim().to_string());
    Ok(match value.filter(|v| !v.is_empty()) {
        Some(token) => Ok(Some(token)),
        None => Err(problem(format!("Secret {namespace}/{} has no key {key:?} (spec.credentialRef)", r.name))),
    })
}
