//! Writing the desired children: refuse to adopt objects Apiary does not own, then
//! server-side apply each one under the operator's single field manager, with force (the
//! operator owns these objects outright).

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::desired::Desired;
use super::labels::{FIELD_MANAGER, mcp_service_account_name};

/// What applying the children gave.
#[derive(Debug)]
pub enum Applied {
    /// Everything applied; the Deployment as the apiserver returned it.
    Done(Box<Deployment>),
    /// A name is taken by an object without Apiary's owner reference; nothing was written.
    Conflict {
        /// Kind of the object in the way.
        kind: &'static str,
        /// Its name.
        name: String,
    },
}

/// True when `meta` carries an owner reference to the object with `uid`.
pub fn owned_by(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, uid: &str) -> bool {
    meta.owner_references.iter().flatten().any(|r| r.uid == uid)
}

/// The children that exist but are not ours, if any (checked before anything is written).
async fn find_conflict<K>(api: &Api<K>, object: &K, kind: &'static str, uid: &str) -> kube::Result<Option<Applied>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let Some(name) = object.meta().name.as_deref() else { return Ok(None) };
    match api.get_opt(name).await? {
        Some(existing) if !owned_by(existing.meta(), uid) => {
            Ok(Some(Applied::Conflict { kind, name: name.to_string() }))
        }
        _ => Ok(None),
    }
}

async fn apply<K>(api: &Api<K>, object: &K) -> kube::Result<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(object)).await
}

fn api<K>(client: &Client, namespace: &str) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    Api::namespaced(client.clone(), namespace)
}

/// Applies every child of `desired` in `namespace` for the MCPServer with `uid`.
pub async fn apply_all(client: &Client, namespace: &str, desired: &Desired, uid: &str) -> kube::Result<Applied> {
    let config_maps: Api<ConfigMap> = api(client, namespace);
    let deployments: Api<Deployment> = api(client, namespace);
    let services: Api<Service> = api(client, namespace);
    let accounts: Api<ServiceAccount> = api(client, namespace);
    let roles: Api<Role> = api(client, namespace);
    let bindings: Api<RoleBinding> = api(client, namespace);

    let checks = [
        find_conflict(&config_maps, &desired.config_map, "ConfigMap", uid).await?,
        find_conflict(&deployments, &desired.deployment, "Deployment", uid).await?,
        find_conflict(&services, &desired.proxy_service, "Service", uid).await?,
        find_conflict(&services, &desired.alias_service, "Service", uid).await?,
        find_conflict(&accounts, &desired.runner_account, "ServiceAccount", uid).await?,
        find_conflict(&roles, &desired.runner_role, "Role", uid).await?,
        find_conflict(&bindings, &desired.runner_binding, "RoleBinding", uid).await?,
    ];
    if let Some(conflict) = checks.into_iter().flatten().next() {
        return Ok(conflict);
    }
    if let Some(account) = &desired.mcp_account
        && let Some(conflict) = find_conflict(&accounts, account, "ServiceAccount", uid).await?
    {
        return Ok(conflict);
    }

    // RBAC and config first, so the pods the Deployment starts find them.
    apply(&accounts, &desired.runner_account).await?;
    apply(&roles, &desired.runner_role).await?;
    apply(&bindings, &desired.runner_binding).await?;
    match &desired.mcp_account {
        Some(account) => {
            apply(&accounts, account).await?;
        }
        None => remove_owned_mcp_account(&accounts, desired, uid).await?,
    }
    apply(&config_maps, &desired.config_map).await?;
    apply(&services, &desired.proxy_service).await?;
    apply(&services, &desired.alias_service).await?;
    let deployment = apply(&deployments, &desired.deployment).await?;
    Ok(Applied::Done(Box::new(deployment)))
}

/// `spec.serviceAccount` now names another account: drop the `<name>-sa` Apiary made earlier.
async fn remove_owned_mcp_account(accounts: &Api<ServiceAccount>, desired: &Desired, uid: &str) -> kube::Result<()> {
    let Some(server) = desired.deployment.metadata.name.as_deref() else { return Ok(()) };
    let name = mcp_service_account_name(server);
    if let Some(existing) = accounts.get_opt(&name).await?
        && owned_by(&existing.metadata, uid)
    {
        accounts.delete(&name, &DeleteParams::default()).await?;
    }
    Ok(())
}
