//! The VirtualMCPServer status from what one reconcile found: the kind-neutral summary of
//! [`outcome`](crate::reconcile::outcome) (`Ready`, `FeaturesApplied`, message) with the phase
//! refined to `Degraded` when the vMCP serves but a member of its group does not, plus `url`,
//! `discoveredBackends`, `backendCount`, the `GroupRefValidated` and `BackendsDiscovered`
//! conditions, the config hashes and `observedGeneration`. Pure, so "nothing changed, write
//! nothing" is an equality check.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;

use super::backends::{Backend, READY};
use super::desired::Desired;
use crate::crd::virtualmcpserver::{
    DiscoveredBackend, OutgoingAuthSource, VirtualMCPServer, VirtualMCPServerPhase, VirtualMCPServerStatus,
};
use crate::reconcile::check::{self, Check};
use crate::reconcile::outcome::{Outcome, Phase, READY as READY_CONDITION, Summary, find, summarize};

/// Condition: the group named by the VirtualMCPServer exists.
pub const GROUP_REF_VALIDATED: &str = "GroupRefValidated";
/// Condition: the backends could be resolved.
pub const BACKENDS_DISCOVERED: &str = "BackendsDiscovered";

/// The status `vmcp` should have after `outcome`; `want` is the desired state when it could be
/// computed. Fields this reconciler does not own are kept. `now` is used only when a condition
/// flips.
pub fn compute(
    vmcp: &VirtualMCPServer,
    outcome: &Outcome,
    want: Option<&Desired>,
    now: Timestamp,
) -> VirtualMCPServerStatus {
    let mut status = vmcp.status.clone().unwrap_or_default();
    let generation = vmcp.metadata.generation;
    let Summary { phase, mut message, conditions } =
        summarize("VirtualMCPServer", outcome, status.conditions.take().unwrap_or_default(), generation, now);
    let mut conditions = conditions;
    let not_ready: Vec<&Backend> =
        want.map(|w| w.backends.iter().filter(|b| b.kind.is_some() && b.status != READY).collect()).unwrap_or_default();
    status.phase = Some(match phase {
        Phase::Pending => VirtualMCPServerPhase::Pending,
        Phase::Failed => VirtualMCPServerPhase::Failed,
        Phase::Running if not_ready.is_empty() => VirtualMCPServerPhase::Ready,
        Phase::Running => {
            let names: Vec<String> = not_ready
                .iter()
                .map(|b| format!("{} ({})", b.name, b.message.clone().unwrap_or_else(|| b.status.to_string())))
                .collect();
            message = format!("{message}; backends not ready: {}", names.join(", "));
            VirtualMCPServerPhase::Degraded
        }
    });
    if let Outcome::Applied { url, .. } = outcome {
        status.url = Some(url.clone());
    }
    if let Some(w) = want {
        conditions = check::apply(conditions, &[group_check(w), backends_check(w)], generation, now);
        status.discovered_backends = Some(w.backends.iter().map(discovered).collect());
        status.backend_count = Some(i32::try_from(w.backends.len()).unwrap_or(i32::MAX));
        if matches!(outcome, Outcome::Applied { .. }) {
            status.oidc_config_hash = w.hashes.oidc.clone();
            status.authz_config_hash = w.hashes.authz.clone();
        }
    }
    status.message = Some(message);
    status.observed_generation = generation;
    status.conditions = Some(conditions);
    status
}

fn group_check(w: &Desired) -> Check {
    let t = GROUP_REF_VALIDATED;
    match w.group_found {
        Some(true) => Check::pass(t, "GroupFound", format!("MCPGroup {} exists", w.group)),
        Some(false) => Check::fail(t, "GroupNotFound", format!("spec.config.groupRef: MCPGroup {} not found", w.group)),
        None => Check::pass(t, "NotRequired", "outgoingAuth.source inline: the group is not read"),
    }
}

fn backends_check(w: &Desired) -> Check {
    let t = BACKENDS_DISCOVERED;
    if let Some(why) = &w.backends_refused {
        return Check::fail(t, "BackendRefused", why.clone());
    }
    if w.group_found == Some(false) {
        return Check::fail(t, "GroupNotFound", format!("no backends: MCPGroup {} not found", w.group));
    }
    let served: Vec<&str> = w.backends.iter().filter(|b| b.served).map(|b| b.name.as_str()).collect();
    let source = if w.group_found.is_some() { OutgoingAuthSource::Discovered } else { OutgoingAuthSource::Inline };
    let reason = match source {
        OutgoingAuthSource::Discovered => "Discovered",
        OutgoingAuthSource::Inline => "Inline",
    };
    let list = if served.is_empty() { "none".to_string() } else { served.join(", ") };
    Check::pass(t, reason, format!("{} backend(s) served: {list}", served.len()))
}

fn discovered(b: &Backend) -> DiscoveredBackend {
    DiscoveredBackend {
        name: b.name.clone(),
        url: Some(b.url.clone()),
        status: Some(b.status.to_string()),
        auth_type: Some(b.auth_type.clone()),
        auth_config_ref: b.auth_config_ref.clone(),
        message: b.message.clone(),
        ..DiscoveredBackend::default()
    }
}

/// The Ready condition of a status, if any.
pub fn ready_condition(status: Option<&VirtualMCPServerStatus>) -> Option<&Condition> {
    find(status?.conditions.as_ref(), READY_CONDITION)
}

#[cfg(test)]
mod tests;
