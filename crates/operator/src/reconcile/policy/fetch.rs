//! Reading the objects a parent references, in the parent's namespace. A missing object is
//! `None` (the parent reports it); only API failures are errors (the reconcile retries).

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use super::{PolicyRefs, Referenced};
use crate::crd::authzconfig::MCPAuthzConfig;
use crate::crd::externalauth::MCPExternalAuthConfig;
use crate::crd::oidcconfig::MCPOIDCConfig;
use crate::crd::telemetryconfig::MCPTelemetryConfig;
use crate::crd::toolconfig::MCPToolConfig;

/// The objects `refs` names in `namespace`.
pub async fn fetch(client: &Client, namespace: &str, refs: &PolicyRefs<'_>) -> Result<Referenced, kube::Error> {
    Ok(Referenced {
        oidc: get::<MCPOIDCConfig>(client, namespace, refs.oidc_config_ref.map(|r| r.name.as_str())).await?,
        authz: get::<MCPAuthzConfig>(client, namespace, refs.authz_config_ref.map(|r| r.name.as_str())).await?,
        authz_config_map: get::<ConfigMap>(client, namespace, refs.authz_config_map()).await?,
        tools: get::<MCPToolConfig>(client, namespace, refs.tool_config_ref.map(|r| r.name.as_str())).await?,
        external_auth: get::<MCPExternalAuthConfig>(
            client,
            namespace,
            refs.external_auth_config_ref.map(|r| r.name.as_str()),
        )
        .await?,
        telemetry: get::<MCPTelemetryConfig>(client, namespace, refs.telemetry_config_ref.map(|r| r.name.as_str()))
            .await?,
    })
}

/// The object `name` of kind `K` in `namespace`; `None` when unset or not found.
pub(crate) async fn get<K>(client: &Client, namespace: &str, name: Option<&str>) -> Result<Option<K>, kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
{
    match name.filter(|n| !n.is_empty()) {
        None => Ok(None),
        Some(name) => Api::<K>::namespaced(client.clone(), namespace).get_opt(name).await,
    }
}
