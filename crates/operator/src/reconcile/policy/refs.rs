//! Which protection fields a parent sets, in one view shared by the MCPServer, the
//! MCPRemoteProxy and the VirtualMCPServer (its incoming auth), so resolving, fetching and watching the referenced objects are written once.

use crate::crd::common::{AuthzConfig, AuthzSource, NameRef, OidcConfigRef, TelemetryConfigRef};
use crate::crd::mcpremoteproxy::MCPRemoteProxy;
use crate::crd::mcpserver::MCPServer;
use crate::crd::virtualmcpserver::VirtualMCPServer;

/// The protection fields of one parent's spec.
#[derive(Clone, Copy, Debug, Default)]
pub struct PolicyRefs<'a> {
    /// `spec.oidcConfigRef`.
    pub oidc_config_ref: Option<&'a OidcConfigRef>,
    /// `spec.authzConfig`.
    pub authz_config: Option<&'a AuthzConfig>,
    /// `spec.authzConfigRef`.
    pub authz_config_ref: Option<&'a NameRef>,
    /// `spec.toolConfigRef`.
    pub tool_config_ref: Option<&'a NameRef>,
    /// `spec.audit.enabled: true`.
    pub audit: bool,
    /// `spec.externalAuthConfigRef`.
    pub external_auth_config_ref: Option<&'a NameRef>,
    /// `spec.telemetryConfigRef`.
    pub telemetry_config_ref: Option<&'a TelemetryConfigRef>,
}

impl PolicyRefs<'_> {
    /// The name of the ConfigMap holding the authorization document, when one is referenced.
    pub fn authz_config_map(&self) -> Option<&str> {
        let a = self.authz_config?;
        match a.type_ {
            AuthzSource::ConfigMap => a.config_map.as_ref().map(|c| c.name.as_str()),
            AuthzSource::Inline => None,
        }
    }
}

/// A kind whose spec may reference protection objects.
pub trait Referencing {
    /// Its protection fields.
    fn policy_refs(&self) -> PolicyRefs<'_>;
}

/// `Referencing` for a kind whose spec carries the protection fields at its top level under the
/// same names (the MCPServer and the MCPRemoteProxy): one body for both.
macro_rules! spec_level_refs {
    ($($kind:ty),+) => {$(
        impl Referencing for $kind {
            fn policy_refs(&self) -> PolicyRefs<'_> {
                let s = &self.spec;
                PolicyRefs {
                    oidc_config_ref: s.oidc_config_ref.as_ref(),
                    authz_config: s.authz_config.as_ref(),
                    authz_config_ref: s.authz_config_ref.as_ref(),
                    tool_config_ref: s.tool_config_ref.as_ref(),
                    audit: s.audit.as_ref().is_some_and(|a| a.enabled == Some(true)),
                    external_auth_config_ref: s.external_auth_config_ref.as_ref(),
                    telemetry_config_ref: s.telemetry_config_ref.as_ref(),
                }
            }
        }
    )+};
}

spec_level_refs!(MCPServer, MCPRemoteProxy);

/// A VirtualMCPServer's incoming auth: its MCPOIDCConfig and authorization policy. Its
/// telemetry reference is not resolved (the vMCP does not apply it yet; the reconciler names it).
impl Referencing for VirtualMCPServer {
    fn policy_refs(&self) -> PolicyRefs<'_> {
        let a = &self.spec.incoming_auth;
        PolicyRefs {
            oidc_config_ref: a.oidc_config_ref.as_ref(),
            authz_config: a.authz_config.as_ref(),
            authz_config_ref: a.authz_config_ref.as_ref(),
            ..PolicyRefs::default()
        }
    }
}
