//! The MCPRemoteProxy status computed from what the reconcile saw: phase, url, message,
//! observedGeneration, the `Ready` condition and the `FeaturesApplied` condition that names the
//! spec fields Apiary does not apply yet. Pure, so "nothing changed, write nothing" is a plain
//! equality check.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::desired::Unapplied;
use crate::crd::mcpremoteproxy::{MCPRemoteProxy, MCPRemoteProxyPhase, MCPRemoteProxyStatus};
use crate::reconcile::observe::Observed;
use crate::reconcile::status::{READY, set_condition};

/// Type of the condition saying whether every set spec field is in effect.
pub const FEATURES_APPLIED: &str = "FeaturesApplied";

/// What one reconcile found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Children applied; the proxy Deployment's state.
    Applied {
        /// `status.url`.
        url: String,
        /// Ready proxy replicas.
        ready_replicas: i32,
        /// The Deployment has at least one available replica.
        available: bool,
        /// Why it is not available yet, when known (a pod's waiting reason).
        waiting: Option<String>,
        /// Set fields Apiary does not apply.
        unapplied: Unapplied,
    },
    /// A child's name is taken by an object Apiary does not own; nothing was applied.
    NameConflict {
        /// Kind of the foreign object.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The spec cannot be turned into children.
    Invalid(String),
}

impl Outcome {
    /// Children applied, the proxy served at `url` and seen as `seen`, with `unapplied` fields.
    pub fn applied(url: String, seen: Observed, unapplied: Unapplied) -> Self {
        let Observed { ready_replicas, available, waiting } = seen;
        Outcome::Applied { url, ready_replicas, available, waiting, unapplied }
    }

    /// `(phase, Ready status, reason, message)`.
    fn ready(&self) -> (MCPRemoteProxyPhase, &'static str, &'static str, String) {
        match self {
            Outcome::Applied { unapplied, .. } if !unapplied.blocking.is_empty() => (
                MCPRemoteProxyPhase::Failed,
                "False",
                "UnsupportedFeature",
                format!(
                    "{} not supported by Apiary yet; the proxy is kept at 0 replicas rather than serve without it",
                    unapplied.blocking.join(", ")
                ),
            ),
            Outcome::Applied { available: true, ready_replicas, .. } => (
                MCPRemoteProxyPhase::Ready,
                "True",
                "DeploymentAvailable",
                format!("proxy running, {ready_replicas} ready replica(s)"),
            ),
            Outcome::Applied { available: false, waiting, .. } => (
                MCPRemoteProxyPhase::Pending,
                "False",
                "DeploymentUnavailable",
                match waiting {
                    Some(why) => format!("waiting for the proxy Deployment: {why}"),
                    None => "waiting for the proxy Deployment to become available".to_string(),
                },
            ),
            Outcome::NameConflict { kind, name } => (
                MCPRemoteProxyPhase::Failed,
                "False",
                "NameConflict",
                format!("{kind} {name} exists and is not owned by this MCPRemoteProxy; not adopting it"),
            ),
            Outcome::Invalid(why) => (MCPRemoteProxyPhase::Failed, "False", "InvalidSpec", why.clone()),
        }
    }
}

/// The `FeaturesApplied` condition's `(status, reason, message)`, when the outcome knows it.
fn features(outcome: &Outcome) -> Option<(&'static str, &'static str, String)> {
    let Outcome::Applied { unapplied, .. } = outcome else { return None };
    if unapplied.is_empty() {
        return Some(("True", "AllApplied", "every field set in the spec is applied".to_string()));
    }
    let mut parts = Vec::new();
    if !unapplied.blocking.is_empty() {
        parts.push(format!("{} (the proxy is not started without it)", unapplied.blocking.join(", ")));
    }
    if !unapplied.ignored.is_empty() {
        parts.push(format!("{} (ignored; the proxy runs without it)", unapplied.ignored.join(", ")));
    }
    Some(("False", "NotImplemented", format!("not applied yet by Apiary: {}", parts.join("; "))))
}

/// The status `proxy` should have after `outcome`, keeping fields this reconciler does not own
/// (hashes, externalUrl, other conditions) as they are. `now` is used only when a condition flips.
pub fn compute(proxy: &MCPRemoteProxy, outcome: &Outcome, now: Timestamp) -> MCPRemoteProxyStatus {
    let mut status = proxy.status.clone().unwrap_or_default();
    let generation = proxy.metadata.generation;
    let (phase, ready, reason, mut message) = outcome.ready();
    let condition = |type_: &str, status: &str, reason: &str, message: String| Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: Time(now),
    };
    let mut conditions = status.conditions.take().unwrap_or_default();
    conditions = set_condition(conditions, condition(READY, ready, reason, message.clone()));
    if let Some((applied, why, text)) = features(outcome) {
        if applied == "False" && reason != "UnsupportedFeature" {
            // The message is what `kubectl describe` leads with: it must not read as if every
            // field were in effect.
            message = format!("{message}; {text}");
        }
        conditions = set_condition(conditions, condition(FEATURES_APPLIED, applied, why, text));
    }
    status.phase = Some(phase);
    status.message = Some(message);
    status.observed_generation = generation;
    if let Outcome::Applied { url, .. } = outcome {
        status.url = Some(url.clone());
    }
    status.conditions = Some(conditions);
    status
}

/// The Ready condition of a status, if any.
pub fn ready_condition(status: Option<&MCPRemoteProxyStatus>) -> Option<&Condition> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == READY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::mcpremoteproxy::MCPRemoteProxySpec;

    fn proxy(generation: i64, status: Option<MCPRemoteProxyStatus>) -> MCPRemoteProxy {
        let mut p = MCPRemoteProxy::new(
            "remote",
            MCPRemoteProxySpec { remote_url: Some("https://mcp.example.com/mcp".into()), ..Default::default() },
        );
        p.metadata.generation = Some(generation);
        p.status = status;
        p
    }

    fn applied(available: bool, unapplied: Unapplied) -> Outcome {
        Outcome::Applied {
            url: "http://u".into(),
            ready_replicas: i32::from(available),
            available,
            waiting: (!available).then(|| "image x cannot be pulled".to_string()),
            unapplied,
        }
    }

    fn condition<'a>(s: &'a MCPRemoteProxyStatus, type_: &str) -> &'a Condition {
        s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn pending_then_ready_moves_the_transition_time_once() {
        let (t1, t2, t3) = (
            Timestamp::from_second(1).unwrap(),
            Timestamp::from_second(2).unwrap(),
            Timestamp::from_second(3).unwrap(),
        );
        let s1 = compute(&proxy(1, None), &applied(false, Unapplied::default()), t1);
        assert_eq!(s1.phase, Some(MCPRemoteProxyPhase::Pending));
        assert!(s1.message.as_deref().unwrap().contains("cannot be pulled"));
        assert_eq!((s1.observed_generation, s1.url.as_deref()), (Some(1), Some("http://u")));
        assert_eq!(condition(&s1, FEATURES_APPLIED).status, "True");
        // The same outcome later gives the same status, so nothing is written.
        assert_eq!(compute(&proxy(1, Some(s1.clone())), &applied(false, Unapplied::default()), t2), s1);
        let s2 = compute(&proxy(1, Some(s1.clone())), &applied(true, Unapplied::default()), t2);
        assert_eq!(s2.phase, Some(MCPRemoteProxyPhase::Ready));
        let ready = condition(&s2, READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str(), ready.last_transition_time.0),
            ("True", "DeploymentAvailable", t2)
        );
        assert_eq!(condition(&s2, FEATURES_APPLIED).last_transition_time.0, t1, "unchanged condition kept its time");
        let s3 = compute(&proxy(2, Some(s2.clone())), &applied(true, Unapplied::default()), t3);
        assert_eq!(
            (condition(&s3, READY).observed_generation, condition(&s3, READY).last_transition_time.0),
            (Some(2), t2)
        );
    }

    #[test]
    fn unapplied_fields_are_named_and_blocking_ones_fail_the_proxy() {
        let t = Timestamp::from_second(5).unwrap();
        let ignored = Unapplied { blocking: vec![], ignored: vec!["spec.audit"] };
        let s = compute(&proxy(1, None), &applied(true, ignored), t);
        assert_eq!(s.phase, Some(MCPRemoteProxyPhase::Ready));
        let f = condition(&s, FEATURES_APPLIED);
        assert_eq!((f.status.as_str(), f.reason.as_str()), ("False", "NotImplemented"));
        assert!(f.message.contains("spec.audit"), "{}", f.message);
        assert!(s.message.as_deref().unwrap().contains("spec.audit"), "the phase message names it too");

        let blocking = Unapplied { blocking: vec!["spec.oidcConfigRef"], ignored: vec![] };
        let s = compute(&proxy(1, None), &applied(false, blocking), t);
        assert_eq!(s.phase, Some(MCPRemoteProxyPhase::Failed));
        let r = condition(&s, READY);
        assert_eq!((r.status.as_str(), r.reason.as_str()), ("False", "UnsupportedFeature"));
        assert!(r.message.contains("spec.oidcConfigRef"));
        assert!(condition(&s, FEATURES_APPLIED).message.contains("spec.oidcConfigRef"));
    }

    #[test]
    fn a_name_conflict_fails_and_keeps_fields_it_does_not_own() {
        let before = MCPRemoteProxyStatus {
            external_url: Some("https://x".into()),
            url: Some("http://old".into()),
            ..Default::default()
        };
        let s = compute(
            &proxy(1, Some(before)),
            &Outcome::NameConflict { kind: "Deployment", name: "remote".into() },
            Timestamp::from_second(9).unwrap(),
        );
        assert_eq!(s.phase, Some(MCPRemoteProxyPhase::Failed));
        assert_eq!(s.external_url.as_deref(), Some("https://x"));
        assert_eq!(condition(&s, READY).reason, "NameConflict");
        assert!(s.conditions.as_ref().unwrap().iter().all(|c| c.type_ != FEATURES_APPLIED));
    }
}
