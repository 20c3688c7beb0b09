//! The MCPGroup reconciler: lists the MCPServers, MCPRemoteProxies and MCPServerEntries of the
//! group's namespace whose `groupRef` names it and writes them, sorted and counted, to its
//! status ([`members`]) when they changed. Watches on the three member kinds keep it current:
//! a member wakes the group it names and any group whose status still lists it (it moved or
//! went). Creates nothing.

pub mod members;

use std::sync::Arc;
use std::time::Duration;

use kube::api::ListParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};

use crate::crd::common::GroupRef;
use crate::crd::mcpgroup::{MCPGroup, MCPGroupStatus};
use crate::crd::mcpremoteproxy::MCPRemoteProxy;
use crate::crd::mcpserver::MCPServer;
use crate::crd::mcpserverentry::MCPServerEntry;
use crate::reconcile::{Context, Error, WatchScope, controller, outcome, report};
use members::{Members, in_group};

/// Safety-net resync; the watches catch real changes.
const RESYNC: Duration = Duration::from_secs(300);
/// Page size when listing members, so one list never holds an unbounded response.
const PAGE: u32 = 500;

/// Runs the MCPGroup controller(s) for `scope` until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    scope: WatchScope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let controllers = controller::namespaces(scope).into_iter().map(|ns| {
        let ctx = Arc::clone(&ctx);
        let client = &ctx.client;
        let c = Controller::new(controller::api::<MCPGroup>(client, ns.as_deref()), watcher::Config::default());
        let groups = c.store();
        let c = c
            .watches(
                controller::api::<MCPServer>(client, ns.as_deref()),
                watcher::Config::default(),
                groups_of(&groups, |s: &MCPServer| s.spec.group_ref.as_ref(), |s| s.servers.as_ref()),
            )
            .watches(
                controller::api::<MCPRemoteProxy>(client, ns.as_deref()),
                watcher::Config::default(),
                groups_of(&groups, |p: &MCPRemoteProxy| p.spec.group_ref.as_ref(), |s| s.remote_proxies.as_ref()),
            )
            .watches(
                controller::api::<MCPServerEntry>(client, ns.as_deref()),
                watcher::Config::default(),
                groups_of(&groups, |e: &MCPServerEntry| Some(&e.spec.group_ref), |s| s.entries.as_ref()),
            );
        controller::drive(c, reconcile, Arc::clone(&ctx), shutdown.clone())
    });
    futures::future::join_all(controllers).await;
}

/// A mapper from a changed member of kind `O` to the groups in its namespace it names
/// (`group_ref`) or whose status lists it (`listed`).
fn groups_of<O: Resource + 'static>(
    groups: &Store<MCPGroup>,
    group_ref: fn(&O) -> Option<&GroupRef>,
    listed: fn(&MCPGroupStatus) -> Option<&Vec<String>>,
) -> impl Fn(O) -> Vec<ObjectRef<MCPGroup>> + Send + Sync + 'static {
    let groups = groups.clone();
    move |member: O| {
        let namespace = member.meta().namespace.clone();
        let name = member.meta().name.clone().unwrap_or_default();
        let named = group_ref(&member).and_then(|g| g.name().ok().map(str::to_string));
        groups
            .state()
            .iter()
            .filter(|g| g.meta().namespace == namespace)
            .filter(|g| {
                named.as_deref() == Some(g.name_any().as_str()) || members::lists(g.status.as_ref(), listed, &name)
            })
            .map(|g| ObjectRef::from_obj(&**g))
            .collect()
    }
}

/// One reconcile of one MCPGroup.
pub async fn reconcile(group: Arc<MCPGroup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(group) = report::fresh(&ctx, &*group).await? else {
        return Ok(Action::await_change());
    };
    let observed = group.status.as_ref().and_then(|s| s.observed_generation);
    let Some(run) = report::begin(&ctx, &group, observed, Vec::<String>::new).await? else {
        return Ok(Action::await_change());
    };
    let (members, failure) = match list_members(&ctx.client, &run.namespace, &run.name).await {
        Ok(m) => (Ok(m), None),
        Err(e) => (Err(e.to_string()), Some(e)),
    };
    let next = members::compute(members, group.status.as_ref(), group.meta().generation, outcome::now_seconds());
    run.finish(&ctx, group.status.as_ref(), &next, members::checked_condition).await?;
    match failure {
        // Reported on the group as well; the controller retries.
        Some(e) => Err(Error::Kube(e)),
        None => Ok(Action::requeue(RESYNC)),
    }
}

/// The members of group `group` in `namespace`.
async fn list_members(client: &Client, namespace: &str, group: &str) -> Result<Members, kube::Error> {
    let servers = list::<MCPServer>(client, namespace).await?;
    let proxies = list::<MCPRemoteProxy>(client, namespace).await?;
    let entries = list::<MCPServerEntry>(client, namespace).await?;
    Ok(Members {
        servers: in_group(group, servers.iter().map(|s| (s.name_any(), s.spec.group_ref.as_ref()))),
        remote_proxies: in_group(group, proxies.iter().map(|p| (p.name_any(), p.spec.group_ref.as_ref()))),
        entries: in_group(group, entries.iter().map(|e| (e.name_any(), Some(&e.spec.group_ref)))),
    })
}

/// Every `K` in `namespace`, read page by page.
pub(crate) async fn list<K>(client: &Client, namespace: &str) -> Result<Vec<K>, kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list(&params).await?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}
