//! Writing an MCPRemoteProxy's desired children: refuse to adopt objects it does not own, then
//! server-side apply each one under the operator's single field manager, with force (the
//! operator owns these objects outright).

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::desired::Desired;
use crate::reconcile::{FIELD_MANAGER, owned_by};

/// What applying the children gave.
#[derive(Debug)]
pub enum Applied {
    /// Everything applied; the Deployment as the apiserver returned it.
    Done(Box<Deployment>),
    /// A name is taken by an object without this proxy's owner reference; nothing was written.
    Conflict {
        /// Kind of the object in the way.
        kind: &'static str,
        /// Its name.
        name: String,
    },
}

/// `Some(kind, name)` when `object`'s name is held by an object not owned by `uid`.
async fn foreign<K>(
    client: &Client,
    namespace: &str,
    object: &K,
    uid: &str,
) -> kube::Result<Option<(&'static str, String)>>
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
            Some((<K as k8s_openapi::Resource>::KIND, name.to_string()))
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

/// Applies every child of `desired` in `namespace` for the MCPRemoteProxy with `uid`.
pub async fn apply_all(client: &Client, namespace: &str, desired: &Desired, uid: &str) -> kube::Result<Applied> {
    let checks = [
        foreign(client, namespace, &desired.config_map, uid).await?,
        foreign(client, namespace, &desired.deployment, uid).await?,
        foreign(client, namespace, &desired.service, uid).await?,
        foreign(client, namespace, &desired.runner_account, uid).await?,
        foreign(client, namespace, &desired.runner_role, uid).await?,
        foreign(client, namespace, &desired.runner_binding, uid).await?,
    ];
    if let Some((kind, name)) = checks.into_iter().flatten().next() {
        return Ok(Applied::Conflict { kind, name });
    }
    // RBAC and config first, so the pods the Deployment starts find them.
    apply(client, namespace, &desired.runner_account).await?;
    apply(client, namespace, &desired.runner_role).await?;
    apply(client, namespace, &desired.runner_binding).await?;
    apply(client, namespace, &desired.config_map).await?;
    apply(client, namespace, &desired.service).await?;
    let deployment = apply(client, namespace, &desired.deployment).await?;
    Ok(Applied::Done(Box::new(deployment)))
}
