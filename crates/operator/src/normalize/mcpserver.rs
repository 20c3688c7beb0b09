//! Canonical view of an MCPServer: `proxyPort` over `port`, `mcpPort` over `targetPort`,
//! permission profile type `configmap` over `configMap`, `groupRef` as a string, defaults.

use super::{DEFAULT_PORT, Normalize, Normalized, canonical_group_ref, pick};
use crate::crd::common::SessionAffinity;
use crate::crd::mcpserver::{MCPServerSpec, PermissionProfileRef, PermissionProfileType, ProxyMode, ServerTransport};

/// Builtin profile used when an MCPServer names none.
pub const DEFAULT_PERMISSION_PROFILE: &str = "network";

impl Normalize for MCPServerSpec {
    fn normalize(&self) -> Normalized<Self> {
        let mut conflicts = Vec::new();
        let mut spec = self.clone();
        spec.proxy_port = Some(
            pick("spec.proxyPort", self.proxy_port, "spec.port", self.port, &mut conflicts).unwrap_or(DEFAULT_PORT),
        );
        spec.port = None;
        spec.mcp_port = Some(
            pick("spec.mcpPort", self.mcp_port, "spec.targetPort", self.target_port, &mut conflicts)
                .unwrap_or(DEFAULT_PORT),
        );
        spec.target_port = None;
        spec.transport = Some(self.transport.unwrap_or(ServerTransport::Stdio));
        spec.proxy_mode = Some(self.proxy_mode.unwrap_or(ProxyMode::StreamableHttp));
        spec.session_affinity = Some(self.session_affinity.unwrap_or(SessionAffinity::ClientIP));
        spec.permission_profile = Some(match &self.permission_profile {
            Some(profile) => PermissionProfileRef {
                type_: Some(match profile.type_ {
                    None | Some(PermissionProfileType::Builtin) => PermissionProfileType::Builtin,
                    Some(PermissionProfileType::Configmap | PermissionProfileType::ConfigMapCamel) => {
                        PermissionProfileType::Configmap
                    }
                }),
                ..profile.clone()
            },
            None => PermissionProfileRef {
                type_: Some(PermissionProfileType::Builtin),
                name: DEFAULT_PERMISSION_PROFILE.to_string(),
                key: None,
            },
        });
        spec.group_ref = self.group_ref.as_ref().map(canonical_group_ref);
        Normalized { spec, conflicts }
    }
}
