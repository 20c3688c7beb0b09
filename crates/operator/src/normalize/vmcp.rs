//! Canonical view of a VirtualMCPServer: the group in `spec.config.groupRef` (over ToolHive's
//! `spec.groupRef.name`), defaults of the outgoing-auth source.

use super::{Normalize, Normalized, pick};
use crate::crd::common::SessionAffinity;
use crate::crd::virtualmcpserver::{OutgoingAuthSource, ServiceType, VirtualMCPServerSpec};

impl Normalize for VirtualMCPServerSpec {
    fn normalize(&self) -> Normalized<Self> {
        let mut conflicts = Vec::new();
        let mut spec = self.clone();
        let mut config = self.config.clone().unwrap_or_default();
        let alias = self.group_ref.as_ref().and_then(|g| g.name().ok()).map(str::to_string);
        config.group_ref =
            pick("spec.config.groupRef", config.group_ref.take(), "spec.groupRef.name", alias.clone(), &mut conflicts);
        // An unusable `spec.groupRef` (not a name) stays for validation to report.
        if alias.is_some() || self.group_ref.is_none() {
            spec.group_ref = None;
        }
        spec.config = Some(config);
        let mut outgoing = self.outgoing_auth.clone().unwrap_or_default();
        outgoing.source = Some(outgoing.source.unwrap_or(OutgoingAuthSource::Discovered));
        spec.outgoing_auth = Some(outgoing);
        spec.service_type = Some(self.service_type.unwrap_or(ServiceType::ClusterIP));
        spec.session_affinity = Some(self.session_affinity.unwrap_or(SessionAffinity::ClientIP));
        Normalized { spec, conflicts }
    }
}
