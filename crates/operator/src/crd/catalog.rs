//! The list of every CRD Apiary serves, in their served (two-version) form, and their file
//! names under `deploy/crds/`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::versions::{VersionsError, with_seed_version};
use super::{
    authzconfig::MCPAuthzConfig, externalauth::MCPExternalAuthConfig, mcpgroup::MCPGroup,
    mcpremoteproxy::MCPRemoteProxy, mcpserver::MCPServer, mcpserverentry::MCPServerEntry, oidcconfig::MCPOIDCConfig,
    registration::MCPServerRegistration, telemetryconfig::MCPTelemetryConfig, toolconfig::MCPToolConfig,
    virtualmcpserver::VirtualMCPServer,
};

/// The derived single-version CRDs, one per kind.
pub fn derived() -> Vec<CustomResourceDefinition> {
    vec![
        MCPServer::crd(),
        MCPRemoteProxy::crd(),
        MCPServerEntry::crd(),
        MCPGroup::crd(),
        MCPExternalAuthConfig::crd(),
        MCPOIDCConfig::crd(),
        MCPAuthzConfig::crd(),
        MCPToolConfig::crd(),
        MCPTelemetryConfig::crd(),
        VirtualMCPServer::crd(),
        MCPServerRegistration::crd(),
    ]
}

/// Every CRD as served: storage version plus `v1alpha1`.
pub fn all() -> Result<Vec<CustomResourceDefinition>, VersionsError> {
    derived().into_iter().map(with_seed_version).collect()
}

/// File name of a CRD under `deploy/crds/`: `<plural>.<group>.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.{}.yaml", crd.spec.names.plural, crd.spec.group)
}
