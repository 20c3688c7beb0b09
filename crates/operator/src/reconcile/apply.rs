//! Writing the desired children of either kind: refuse to adopt objects the parent does not
//! own, then server-side apply each one under the operator's single field manager, with force
//! (the operator owns these objects outright).

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::labels::FIELD_MANAGER;

/// What applying the children gave.
#[derive(Debug)]
pub enum Applied {
    /// Everything applied; the Deployment as the apiserver returned it.
    Done(Box<Deployment>),
    /// A name is taken by an object without the parent's owner reference; nothing was written.
    Conflict {
        /// Kind of the object in the way.
        kind: &'static str,
        /// Its name.
        name: String,
    },
}

/// The MCP pod's own ServiceAccount, which only an MCPServer has.
#[derive(Clone, Debug)]
pub enum McpAccount<'a> {
    /// Apply this account.
    Apply(&'a ServiceAccount),
    /// The spec names another account: delete the one with this name if the parent owns it.
    RemoveOwned(String),
}

/// Every child of one parent, in the order they are checked for conflicts.
#[derive(Clone, Debug)]
pub struct Children<'a> {
    /// ConfigMap `<name>-runconfig`.
    pub config_map: &'a ConfigMap,
    /// Deployment `<name>`.
    pub deployment: &'a Deployment,
    /// The Services in front of the proxy.
    pub services: Vec<&'a Service>,
    /// The runner's ServiceAccount, Role and RoleBinding.
    pub runner: (&'a ServiceAccount, &'a Role, &'a RoleBinding),
    /// The MCP pod's account, if the kind has one.
    pub mcp_account: Option<McpAccount<'a>>,
}

/// True when `meta` carries an owner reference to the object with `uid`.
pub fn owned_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references.iter().flatten().any(|r| r.uid == uid)
}

/// `Some(conflict)` when `object`'s name is held by an object not owned by `uid`.
async fn foreign<K>(client: &Client, namespace: &str, object: &K, uid: &str) -> kube::Result<Option<Applied>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + Debug,
{
    let Some(name) = object.meta().name.as_deref() else { return Ok(None) };
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    Ok(match api.get_opt(name).await? {
        Some(existing) if !owned_by(existing.meta(), uid) => {
            Some(Applied::Conflict { kind: <K as k8s_openapi::Resource>::KIND, name: name.to_string() })
        }
        _ => None,
    })
}

async fn apply<K>(client: &Client, namespace: &str, object: &K) -> kube::Result<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Serialize + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await
}

/// Applies every child in `namespace` for the parent with `uid`, unless one of their names is
/// taken by an object the parent does not own.
pub async fn apply_all(client: &Client, namespace: &str, children: Children<'_>, uid: &str) -> kube::Result<Applied> {
    let (runner_account, runner_role, runner_binding) = children.runner;
    let mut checks = vec![
        foreign(client, namespace, children.config_map, uid).await?,
        foreign(client, namespace, children.deployment, uid).await?,
    ];
    for service in &children.services {
        checks.push(foreign(client, namespace, *service, uid).await?);
    }
    checks.push(foreign(client, namespace, runner_account, uid).await?);
    checks.push(foreign(client, namespace, runner_role, uid).await?);
    checks.push(foreign(client, namespace, runner_binding, uid).await?);
    if let Some(McpAccount::Apply(account)) = children.mcp_account.as_ref() {
        checks.push(foreign(client, namespace, *account, uid).await?);
    }
    if let Some(conflict) = checks.into_iter().flatten().next() {
        return Ok(conflict);
    }

    // RBAC and config first, so the pods the Deployment starts find them.
    apply(client, namespace, runner_account).await?;
    apply(client, namespace, runner_role).await?;
    apply(client, namespace, runner_binding).await?;
    match children.mcp_account {
        Some(McpAccount::Apply(account)) => {
            apply(client, namespace, account).await?;
        }
        Some(McpAccount::RemoveOwned(name)) => remove_owned_account(client, namespace, &name, uid).await?,
        None => {}
    }
    apply(client, namespace, children.config_map).await?;
    for service in children.services {
        apply(client, namespace, service).await?;
    }
    let deployment = apply(client, namespace, children.deployment).await?;
    Ok(Applied::Done(Box::new(deployment)))
}

/// `spec.serviceAccount` now names another account: drop the one Apiary made earlier.
async fn remove_owned_account(client: &Client, namespace: &str, name: &str, uid: &str) -> kube::Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    if let Some(existing) = accounts.get_opt(name).await?
        && owned_by(&existing.metadata, uid)
    {
        accounts.delete(name, &DeleteParams::default()).await?;
    }
    Ok(())
}
