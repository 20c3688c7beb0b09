//! Which spec fields Apiary enforces, shared by the MCPServer and MCPRemoteProxy reconcilers. A
//! proxy asked for a protection Apiary cannot give yet is held at zero replicas rather than
//! served open; fields whose absence opens nothing are only named. [`Protection::support`] is
//! the one list to edit when the proxy learns to enforce a field.

use crate::crd::common::AuditConfig;
use crate::crd::mcpremoteproxy::MCPRemoteProxySpec;
use crate::crd::mcpserver::MCPServerSpec;

/// What Apiary does with a spec field that is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// The proxy enforces it.
    Applied,
    /// Not enforced, and serving without it would open what the user closed: the proxy is kept
    /// at zero replicas while it is set.
    Blocking,
    /// Not enforced; the proxy runs without it.
    Ignored,
}

/// The protection fields of the proxy kinds: who may call, what they may call, what is
/// recorded about the calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// Incoming authentication through an MCPOIDCConfig.
    OidcConfigRef,
    /// Incoming authentication through an embedded authorization server.
    AuthServerRef,
    /// Inline authorization policy.
    AuthzConfig,
    /// Authorization policy from an MCPAuthzConfig.
    AuthzConfigRef,
    /// Tool filter and overrides from an MCPToolConfig.
    ToolConfigRef,
    /// Audit logging (only when enabled).
    Audit,
    /// Telemetry through an MCPTelemetryConfig.
    TelemetryConfigRef,
    /// Outgoing authentication through an MCPExternalAuthConfig.
    ExternalAuthConfigRef,
    /// Request webhooks (MCPServer only).
    WebhookConfigRef,
    /// Request rate limits (MCPServer only).
    RateLimiting,
}

impl Protection {
    /// Every protection field, in the order they are reported.
    pub const ALL: [Protection; 10] = [
        Protection::OidcConfigRef,
        Protection::AuthServerRef,
        Protection::AuthzConfig,
        Protection::AuthzConfigRef,
        Protection::ToolConfigRef,
        Protection::Audit,
        Protection::TelemetryConfigRef,
        Protection::ExternalAuthConfigRef,
        Protection::WebhookConfigRef,
        Protection::RateLimiting,
    ];

    /// The field's path in the spec, and what Apiary does with it today. One line per field:
    /// when the proxy learns to enforce one, its line becomes [`Support::Applied`], for both
    /// kinds at once.
    pub const fn support(self) -> (&'static str, Support) {
        match self {
            Protection::OidcConfigRef => ("spec.oidcConfigRef", Support::Applied),
            Protection::AuthServerRef => ("spec.authServerRef", Support::Blocking),
            Protection::AuthzConfig => ("spec.authzConfig", Support::Applied),
            Protection::AuthzConfigRef => ("spec.authzConfigRef", Support::Applied),
            Protection::ToolConfigRef => ("spec.toolConfigRef", Support::Applied),
            Protection::Audit => ("spec.audit", Support::Applied),
            Protection::TelemetryConfigRef => ("spec.telemetryConfigRef", Support::Applied),
            Protection::ExternalAuthConfigRef => ("spec.externalAuthConfigRef", Support::Applied),
            Protection::WebhookConfigRef => ("spec.webhookConfigRef", Support::Blocking),
            Protection::RateLimiting => ("spec.rateLimiting", Support::Blocking),
        }
    }
}

/// A spec that may ask for protections.
pub trait Protected {
    /// Whether the spec asks for `field`: it is set, and set to something that asks
    /// (`audit: {enabled: false}` asks for nothing). A field the kind lacks is never asked for.
    fn asks_for(&self, field: Protection) -> bool;
}

fn audit_on(audit: Option<&AuditConfig>) -> bool {
    audit.is_some_and(|a| a.enabled == Some(true))
}

impl Protected for MCPServerSpec {
    fn asks_for(&self, field: Protection) -> bool {
        match field {
            Protection::OidcConfigRef => self.oidc_config_ref.is_some(),
            Protection::AuthServerRef => self.auth_server_ref.is_some(),
            Protection::AuthzConfig => self.authz_config.is_some(),
            Protection::AuthzConfigRef => self.authz_config_ref.is_some(),
            Protection::ToolConfigRef => self.tool_config_ref.is_some(),
            Protection::Audit => audit_on(self.audit.as_ref()),
            Protection::TelemetryConfigRef => self.telemetry_config_ref.is_some(),
            Protection::ExternalAuthConfigRef => self.external_auth_config_ref.is_some(),
            Protection::WebhookConfigRef => self.webhook_config_ref.is_some(),
            Protection::RateLimiting => self.rate_limiting.is_some(),
        }
    }
}

impl Protected for MCPRemoteProxySpec {
    fn asks_for(&self, field: Protection) -> bool {
        match field {
            Protection::OidcConfigRef => self.oidc_config_ref.is_some(),
            Protection::AuthServerRef => self.auth_server_ref.is_some(),
            Protection::AuthzConfig => self.authz_config.is_some(),
            Protection::AuthzConfigRef => self.authz_config_ref.is_some(),
            Protection::ToolConfigRef => self.tool_config_ref.is_some(),
            Protection::Audit => audit_on(self.audit.as_ref()),
            Protection::TelemetryConfigRef => self.telemetry_config_ref.is_some(),
            Protection::ExternalAuthConfigRef => self.external_auth_config_ref.is_some(),
            // MCPRemoteProxy has no such fields.
            Protection::WebhookConfigRef | Protection::RateLimiting => false,
        }
    }
}

/// Spec fields that are set but that Apiary does not apply yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unapplied {
    /// Protections Apiary cannot give yet; the proxy is kept at zero replicas while any is set.
    pub blocking: Vec<&'static str>,
    /// Fields whose absence opens nothing; the proxy runs without them.
    pub ignored: Vec<&'static str>,
}

impl Unapplied {
    /// The protections `spec` asks for that Apiary does not enforce, sorted by
    /// [`Protection::support`], followed in `ignored` by `others`: the kind's other fields that
    /// are set (`true`) but not applied, which never block.
    pub fn of(spec: &impl Protected, others: &[(&'static str, bool)]) -> Self {
        let mut unapplied = Unapplied::default();
        for field in Protection::ALL.into_iter().filter(|f| spec.asks_for(*f)) {
            match field.support() {
                (_, Support::Applied) => {}
                (name, Support::Blocking) => unapplied.blocking.push(name),
                (name, Support::Ignored) => unapplied.ignored.push(name),
            }
        }
        unapplied.ignored.extend(others.iter().filter(|(_, set)| *set).map(|(name, _)| *name));
        unapplied
    }

    /// True when every set field is applied.
    pub fn is_empty(&self) -> bool {
        self.blocking.is_empty() && self.ignored.is_empty()
    }

    /// True when the proxy must not serve.
    pub fn blocks(&self) -> bool {
        !self.blocking.is_empty()
    }

    /// `wanted` replicas, or zero while a blocking field is set.
    pub fn replicas(&self, wanted: Option<i32>) -> Option<i32> {
        if self.blocks() { Some(0) } else { wanted }
    }
}

/// Each protection field as a manifest sets it (camelCase key, value), one per [`Protection`],
/// for the tests of every module that acts on them.
#[cfg(test)]
pub(crate) fn examples() -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::json;
    vec![
        ("oidcConfigRef", json!({"name": "keycloak", "audience": "fetch"})),
        ("authServerRef", json!({"name": "embedded"})),
        ("authzConfig", json!({"type": "inline", "inline": {"policies": ["permit(principal, action, resource);"]}})),
        ("authzConfigRef", json!({"name": "policy"})),
        ("toolConfigRef", json!({"name": "tools"})),
        ("audit", json!({"enabled": true})),
        ("telemetryConfigRef", json!({"name": "otel"})),
        ("externalAuthConfigRef", json!({"name": "exchange"})),
        ("webhookConfigRef", json!({"name": "hooks"})),
        ("rateLimiting", json!({"shared": {"requestsPerMinute": 10}})),
    ]
}

/// The [`examples`] of the protections Apiary does not enforce yet.
#[cfg(test)]
pub(crate) fn blocking_examples() -> Vec<(&'static str, serde_json::Value)> {
    examples()
        .into_iter()
        .zip(Protection::ALL)
        .filter(|(_, p)| p.support().1 == Support::Blocking)
        .map(|(e, _)| e)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_protection_is_listed_once_with_a_distinct_spec_name() {
        let names: Vec<&str> = Protection::ALL.iter().map(|p| p.support().0).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert!(names.iter().all(|n| n.starts_with("spec.")));
    }

    /// Each protection field, set alone on an MCPServer from its manifest form.
    fn server_with(field: &str, value: serde_json::Value) -> MCPServerSpec {
        serde_json::from_value(json!({"image": "img", field: value})).unwrap()
    }

    /// The examples with the support of their field (they are in [`Protection::ALL`] order).
    fn examples_with_support() -> Vec<(&'static str, serde_json::Value, Support)> {
        let examples = examples();
        assert_eq!(examples.len(), Protection::ALL.len(), "one example per protection");
        examples.into_iter().zip(Protection::ALL).map(|((f, v), p)| (f, v, p.support().1)).collect()
    }

    #[test]
    fn each_unenforced_protection_field_of_an_mcpserver_blocks_on_its_own_and_enforced_ones_do_not() {
        for (field, value, support) in examples_with_support() {
            let u = Unapplied::of(&server_with(field, value), &[]);
            if support == Support::Applied {
                assert!(u.is_empty() && !u.blocks(), "{field} is enforced");
                assert_eq!(u.replicas(Some(3)), Some(3), "{field}");
                continue;
            }
            assert_eq!(u.blocking, vec![format!("spec.{field}")], "{field}");
            assert!(u.ignored.is_empty() && u.blocks(), "{field}");
            assert_eq!(u.replicas(Some(3)), Some(0), "{field}");
        }
    }

    #[test]
    fn the_policy_telemetry_and_outgoing_fields_are_enforced_and_the_others_still_block() {
        let applied: Vec<&str> = Protection::ALL
            .iter()
            .map(|p| p.support())
            .filter(|(_, s)| *s == Support::Applied)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            applied,
            [
                "spec.oidcConfigRef",
                "spec.authzConfig",
                "spec.authzConfigRef",
                "spec.toolConfigRef",
                "spec.audit",
                "spec.telemetryConfigRef",
                "spec.externalAuthConfigRef"
            ]
        );
        assert!(Protection::ALL.iter().all(|p| matches!(p.support().1, Support::Applied | Support::Blocking)));
    }

    #[test]
    fn a_remote_proxy_blocks_on_the_unenforced_protections_it_has() {
        for (field, value, support) in examples_with_support() {
            let spec: MCPRemoteProxySpec =
                serde_json::from_value(json!({"remoteURL": "https://mcp.example.com/mcp", field: value})).unwrap();
            let u = Unapplied::of(&spec, &[]);
            if ["webhookConfigRef", "rateLimiting"].contains(&field) || support == Support::Applied {
                assert!(u.is_empty(), "{field} is enforced or not an MCPRemoteProxy field");
            } else {
                assert_eq!(u.blocking, vec![format!("spec.{field}")], "{field}");
            }
        }
    }

    #[test]
    fn audit_off_and_unset_fields_ask_for_nothing() {
        let u = Unapplied::of(&server_with("audit", json!({"enabled": false})), &[]);
        assert!(u.is_empty() && !u.blocks());
        assert_eq!(u.replicas(Some(3)), Some(3));
        assert_eq!(u.replicas(None), None);
        let proxy = MCPRemoteProxySpec::default();
        assert!(Protection::ALL.iter().all(|p| !proxy.asks_for(*p)));
    }

    #[test]
    fn other_fields_are_ignored_in_order_and_never_block() {
        let spec = server_with("webhookConfigRef", json!({"name": "hooks"}));
        let u = Unapplied::of(&spec, &[("spec.a", true), ("spec.b", false), ("spec.c", true)]);
        assert_eq!(u.blocking, vec!["spec.webhookConfigRef"]);
        assert_eq!(u.ignored, vec!["spec.a", "spec.c"]);
        let u = Unapplied::of(&server_with("args", json!([])), &[("spec.a", true)]);
        assert!(!u.blocks() && !u.is_empty());
    }
}
