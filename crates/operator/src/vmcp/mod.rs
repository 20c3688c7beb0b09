//! The VirtualMCPServer reconciler: one vMCP Deployment aggregating the backends of an MCPGroup.
//! Each reconcile reads the group, its namespace's members and what the incoming auth references,
//! computes the children ([`desired`]) with the backends resolved by the operator ([`backends`]),
//! applies them with server-side apply, and reports the status ([`status`]) when it changed.
//! Watches on the member kinds, the group and the auth configs keep the ConfigMap current within
//! seconds of a membership change, without rolling the pods; watches on the children repair drift.

pub mod backends;
pub mod desired;
pub mod oidc_ca;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use crate::crd::authzconfig::MCPAuthzConfig;
use crate::crd::common::GroupRef;
use crate::crd::externalauth::MCPExternalAuthConfig;
use crate::crd::mcpgroup::MCPGroup;
use crate::crd::mcpremoteproxy::MCPRemoteProxy;
use crate::crd::mcpserver::MCPServer;
use crate::crd::mcpserverentry::MCPServerEntry;
use crate::crd::oidcconfig::MCPOIDCConfig;
use crate::crd::virtualmcpserver::VirtualMCPServer;
use crate::group::list;
use crate::normalize::Normalize;
use crate::reconcile::apply::{self, Applied};
use crate::reconcile::controller::{api, drive, namespaces, same_namespace};
use crate::reconcile::outcome::{self, Outcome};
use crate::reconcile::policy::fetch::get;
use crate::reconcile::policy::{self, Referencing};
use crate::reconcile::{Context, Error, WatchScope, controller, observe, report};

/// Runs the VirtualMCPServer controller(s) for `scope` until `shutdown` resolves, then lets the
/// reconciles in flight finish.
pub async fn run(
    ctx: Arc<Context>,
    scope: WatchScope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let controllers = namespaces(scope).into_iter().map(|ns| {
        let ctx = Arc::clone(&ctx);
        let (client, ns) = (&ctx.client, ns.as_deref());
        let children = watcher::Config::default().labels(&desired::children_selector());
        let c = Controller::new(api::<VirtualMCPServer>(client, ns), watcher::Config::default());
        let vmcps = c.store();
        let c = c
            .watches(
                api::<MCPServer>(client, ns),
                watcher::Config::default(),
                aggregating(&vmcps, |s: &MCPServer| s.spec.group_ref.as_ref()),
            )
            .watches(
                api::<MCPRemoteProxy>(client, ns),
                watcher::Config::default(),
                aggregating(&vmcps, |p: &MCPRemoteProxy| p.spec.group_ref.as_ref()),
            )
            .watches(
                api::<MCPServerEntry>(client, ns),
                watcher::Config::default(),
                aggregating(&vmcps, |e: &MCPServerEntry| Some(&e.spec.group_ref)),
            )
            .watches(
                api::<MCPGroup>(client, ns),
                watcher::Config::default(),
                same_namespace(&vmcps, |v: &VirtualMCPServer, name| group_of(v).as_deref() == Some(name)),
            )
            // Any VirtualMCPServer of the namespace may use an auth config, through a member or
            // its own outgoingAuth; they are few, and a resolve is cheap.
            .watches(
                api::<MCPExternalAuthConfig>(client, ns),
                watcher::Config::default(),
                same_namespace(&vmcps, |_: &VirtualMCPServer, _| true),
            )
            .watches(
                api::<MCPOIDCConfig>(client, ns),
                watcher::Config::default(),
                same_namespace(&vmcps, |v: &VirtualMCPServer, name| {
                    v.policy_refs().oidc_config_ref.is_some_and(|r| r.name == name)
                }),
            )
            .watches(
                api::<MCPAuthzConfig>(client, ns),
                watcher::Config::default(),
                same_namespace(&vmcps, |v: &VirtualMCPServer, name| {
                    v.policy_refs().authz_config_ref.is_some_and(|r| r.name == name)
                }),
            )
            .watches(
                api::<ConfigMap>(client, ns),
                watcher::Config::default(),
                same_namespace(&vmcps, |v: &VirtualMCPServer, name| v.policy_refs().authz_config_map() == Some(name)),
            )
            .owns(api::<Deployment>(client, ns), children.clone())
            .owns(api::<ConfigMap>(client, ns), children.clone())
            .owns(api::<Service>(client, ns), children.clone())
            .owns(api::<ServiceAccount>(client, ns), children.clone())
            .owns(api::<Role>(client, ns), children.clone())
            .owns(api::<RoleBinding>(client, ns), children);
        drive(c, reconcile, Arc::clone(&ctx), shutdown.clone())
    });
    futures::future::join_all(controllers).await;
}

/// The group a VirtualMCPServer aggregates (`spec.config.groupRef` over `spec.groupRef.name`).
fn group_of(v: &VirtualMCPServer) -> Option<String> {
    v.spec.normalize().spec.config.and_then(|c| c.group_ref)
}

/// A mapper from a changed member of kind `O` to the VirtualMCPServers of its namespace that
/// aggregate the group it names, or whose status lists it (it left the group, or went).
fn aggregating<O: Resource + 'static>(
    vmcps: &Store<VirtualMCPServer>,
    group_ref: fn(&O) -> Option<&GroupRef>,
) -> impl Fn(O) -> Vec<ObjectRef<VirtualMCPServer>> + Send + Sync + 'static {
    let vmcps = vmcps.clone();
    move |member: O| {
        let namespace = member.meta().namespace.clone();
        let name = member.meta().name.clone().unwrap_or_default();
        let named = group_ref(&member).and_then(|g| g.name().ok().map(str::to_string));
        vmcps
            .state()
            .iter()
            .filter(|v| v.meta().namespace == namespace)
            .filter(|v| {
                (named.is_some() && group_of(v) == named)
                    || v.status
                        .as_ref()
                        .and_then(|s| s.discovered_backends.as_ref())
                        .is_some_and(|list| list.iter().any(|b| b.name == name))
            })
            .map(|v| ObjectRef::from_obj(&**v))
            .collect()
    }
}

/// One reconcile of one VirtualMCPServer.
pub async fn reconcile(vmcp: Arc<VirtualMCPServer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(vmcp) = report::fresh(&ctx, &*vmcp).await? else {
        return Ok(Action::await_change());
    };
    let observed = vmcp.status.as_ref().and_then(|s| s.observed_generation);
    let Some(run) = report::begin(&ctx, &vmcp, observed, || vmcp.spec.normalize().conflicts).await? else {
        return Ok(Action::await_change());
    };
    let policy = policy::fetch(&ctx.client, &run.namespace, &vmcp.policy_refs()).await?;
    let found = fetch(&ctx.client, &run.namespace, group_of(&vmcp).as_deref()).await?;
    let want = desired::desired(&vmcp, &ctx.settings, &policy, &found);
    let outcome = match &want {
        Err(e) => Outcome::Invalid(e.to_string()),
        Ok(want) => match apply::apply_all(&ctx.client, &run.namespace, want.children(), &run.uid).await? {
            Applied::Conflict { kind, name } => Outcome::NameConflict { kind, name },
            Applied::Done(_) if want.refused.is_some() => Outcome::Refused(want.refused.clone().unwrap_or_default()),
            Applied::Done(deployment) => {
                // A vMCP held at zero replicas has no pods to explain.
                let ask_pods = !want.unapplied.blocks();
                let selector = desired::selector_string(&run.name);
                let seen = observe::proxy(&ctx.client, &run.namespace, &selector, &deployment, ask_pods).await?;
                Outcome::applied(desired::url(&run.name, &run.namespace), seen, want.unapplied.clone())
            }
        },
    };
    let next = status::compute(&vmcp, &outcome, want.as_ref().ok(), outcome::now_seconds());
    run.finish(&ctx, vmcp.status.as_ref(), &next, status::ready_condition).await?;
    Ok(controller::requeue(outcome.waiting_for_proxy()))
}

/// Reads the group `group` and the objects of `namespace` its backends may come from. The
/// members are picked from the lists by the pure resolution.
async fn fetch(client: &Client, namespace: &str, group: Option<&str>) -> Result<backends::Found, kube::Error> {
    let auth_configs: BTreeMap<String, MCPExternalAuthConfig> =
        list::<MCPExternalAuthConfig>(client, namespace).await?.into_iter().map(|a| (a.name_any(), a)).collect();
    Ok(backends::Found {
        group: get::<MCPGroup>(client, namespace, group).await?,
        servers: list(client, namespace).await?,
        proxies: list(client, namespace).await?,
        entries: list(client, namespace).await?,
        auth_configs,
    })
}
