//! What one reconcile of a proxy-running kind found, and what that says in its status, the same
//! for the MCPServer and the MCPRemoteProxy: a kind-neutral phase, the message, the `Ready`
//! condition and the `FeaturesApplied` condition naming the spec fields Apiary does not apply.
//! Each kind maps the phase to its own enum and keeps its other status fields. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::features::Unapplied;
use super::observe::Observed;

/// Type of the summary condition.
pub const READY: &str = "Ready";
/// Type of the condition saying whether every set spec field is in effect.
pub const FEATURES_APPLIED: &str = "FeaturesApplied";
/// `Ready` reason while a field Apiary cannot enforce keeps the proxy at zero replicas.
pub const UNSUPPORTED_FEATURE: &str = "UnsupportedFeature";
/// `Ready` reason while a referenced protection cannot be served (missing or invalid object).
pub const INVALID_REFERENCE: &str = "InvalidReference";

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
    /// Children applied with the proxy at zero replicas: a referenced protection (named in the
    /// message) cannot be served.
    Refused(String),
}

impl Outcome {
    /// Children applied, the proxy served at `url` and seen as `seen`, with `unapplied` fields.
    pub fn applied(url: String, seen: Observed, unapplied: Unapplied) -> Self {
        let Observed { ready_replicas, available, waiting } = seen;
        Outcome::Applied { url, ready_replicas, available, waiting, unapplied }
    }

    /// True while the proxy should come up and has not yet: pod reasons change without any
    /// watched object changing, so it is worth looking again soon.
    pub fn waiting_for_proxy(&self) -> bool {
        matches!(self, Outcome::Applied { available: false, unapplied, .. } if !unapplied.blocks())
    }
}

/// Phase in kind-neutral terms (MCPServer says `Running`, MCPRemoteProxy `Ready`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the proxy Deployment.
    Pending,
    /// The proxy serves.
    Running,
    /// Nothing serves until the spec or another object changes.
    Failed,
}

/// The kind-neutral part of a status.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// The phase.
    pub phase: Phase,
    /// `status.message`.
    pub message: String,
    /// The conditions, `Ready` and `FeaturesApplied` set, the others kept.
    pub conditions: Vec<Condition>,
}

/// The phase, message and conditions of an object of `kind` at `generation` after `outcome`,
/// starting from its current `conditions`. `now` is used only when a condition flips.
pub fn summarize(
    kind: &str,
    outcome: &Outcome,
    conditions: Vec<Condition>,
    generation: Option<i64>,
    now: Timestamp,
) -> Summary {
    let (phase, ready, reason, mut message) = ready(kind, outcome);
    let condition = |type_: &str, status: &str, reason: &str, message: String| Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: Time(now),
    };
    let mut conditions = set_condition(conditions, condition(READY, ready, reason, message.clone()));
    if let Some((applied, why, text)) = features(outcome) {
        if applied == "False" && reason != UNSUPPORTED_FEATURE {
            // The message is what `kubectl describe` leads with: it must not read as if every
            // field were in effect.
            message = format!("{message}; {text}");
        }
        conditions = set_condition(conditions, condition(FEATURES_APPLIED, applied, why, text));
    }
    Summary { phase, message, conditions }
}

/// `(phase, Ready status, reason, message)`.
fn ready(kind: &str, outcome: &Outcome) -> (Phase, &'static str, &'static str, String) {
    match outcome {
        Outcome::Applied { unapplied, .. } if unapplied.blocks() => (
            Phase::Failed,
            "False",
            UNSUPPORTED_FEATURE,
            format!(
                "{} not supported by Apiary yet; the proxy is kept at 0 replicas rather than serve without it",
                unapplied.blocking.join(", ")
            ),
        ),
        Outcome::Applied { available: true, ready_replicas, .. } => {
            (Phase::Running, "True", "DeploymentAvailable", format!("proxy running, {ready_replicas} ready replica(s)"))
        }
        Outcome::Applied { available: false, waiting, .. } => (
            Phase::Pending,
            "False",
            "DeploymentUnavailable",
            match waiting {
                Some(why) => format!("waiting for the proxy Deployment: {why}"),
                None => "waiting for the proxy Deployment to become available".to_string(),
            },
        ),
        Outcome::NameConflict { kind: child, name } => (
            Phase::Failed,
            "False",
            "NameConflict",
            format!("{child} {name} exists and is not owned by this {kind}; not adopting it"),
        ),
        Outcome::Invalid(why) => (Phase::Failed, "False", "InvalidSpec", why.clone()),
        Outcome::Refused(why) => (
            Phase::Failed,
            "False",
            INVALID_REFERENCE,
            format!("{why}; the proxy is kept at 0 replicas until this is fixed"),
        ),
    }
}

/// The `FeaturesApplied` condition's `(status, reason, message)`, when the outcome knows it.
fn features(outcome: &Outcome) -> Option<(&'static str, &'static str, String)> {
    let Outcome::Applied { unapplied, .. } = outcome else { return None };
    if unapplied.is_empty() {
        return Some(("True", "AllApplied", "every field set in the spec is applied".to_string()));
    }
    let mut parts = Vec::new();
    if unapplied.blocks() {
        parts.push(format!("{} (the proxy is not started without it)", unapplied.blocking.join(", ")));
    }
    if !unapplied.ignored.is_empty() {
        parts.push(format!("{} (ignored; the proxy runs without it)", unapplied.ignored.join(", ")));
    }
    Some(("False", "NotImplemented", format!("not applied yet by Apiary: {}", parts.join("; "))))
}

/// Puts `new` in place of the condition of its type, keeping the old `lastTransitionTime`
/// when the status did not flip.
pub fn set_condition(mut conditions: Vec<Condition>, mut new: Condition) -> Vec<Condition> {
    if let Some(old) = conditions.iter_mut().find(|c| c.type_ == new.type_) {
        if old.status == new.status {
            new.last_transition_time = old.last_transition_time.clone();
        }
        *old = new;
    } else {
        conditions.push(new);
    }
    conditions
}

/// The condition of `type_` in `conditions`, if any.
pub fn find<'a>(conditions: Option<&'a Vec<Condition>>, type_: &str) -> Option<&'a Condition> {
    conditions?.iter().find(|c| c.type_ == type_)
}

/// Now, to the second: the apiserver stores `metav1.Time` without fractions, so a finer value
/// would read back different from what was written.
pub fn now_seconds() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn applied(available: bool, unapplied: Unapplied) -> Outcome {
        Outcome::Applied {
            url: "http://u".into(),
            ready_replicas: i32::from(available),
            available,
            waiting: (!available).then(|| "image x cannot be pulled".to_string()),
            unapplied,
        }
    }

    fn t(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn a_blocking_field_fails_and_names_itself_in_both_conditions() {
        let blocking = Unapplied { blocking: vec!["spec.audit", "spec.toolConfigRef"], ignored: vec!["spec.x"] };
        let outcome = applied(false, blocking);
        assert!(!outcome.waiting_for_proxy(), "a proxy held at zero is not waited for");
        let s = summarize("MCPServer", &outcome, Vec::new(), Some(3), t(1));
        assert_eq!(s.phase, Phase::Failed);
        let r = find(Some(&s.conditions), READY).unwrap();
        assert_eq!(
            (r.status.as_str(), r.reason.as_str(), r.observed_generation),
            ("False", UNSUPPORTED_FEATURE, Some(3))
        );
        assert!(r.message.starts_with("spec.audit, spec.toolConfigRef not supported"), "{}", r.message);
        assert_eq!(s.message, r.message);
        let f = find(Some(&s.conditions), FEATURES_APPLIED).unwrap();
        assert_eq!((f.status.as_str(), f.reason.as_str()), ("False", "NotImplemented"));
        assert!(f.message.contains("spec.audit, spec.toolConfigRef (the proxy is not started"), "{}", f.message);
        assert!(f.message.contains("spec.x (ignored"), "{}", f.message);
    }

    #[test]
    fn removing_the_field_brings_back_pending_then_running() {
        let blocked = summarize(
            "MCPServer",
            &applied(false, Unapplied { blocking: vec!["spec.oidcConfigRef"], ignored: vec![] }),
            Vec::new(),
            Some(1),
            t(1),
        );
        let pending = applied(false, Unapplied::default());
        assert!(pending.waiting_for_proxy());
        let s = summarize("MCPServer", &pending, blocked.conditions, Some(2), t(2));
        assert_eq!(s.phase, Phase::Pending);
        assert_eq!(find(Some(&s.conditions), READY).unwrap().reason, "DeploymentUnavailable");
        let f = find(Some(&s.conditions), FEATURES_APPLIED).unwrap();
        assert_eq!((f.status.as_str(), f.last_transition_time.0), ("True", t(2)));
        let s = summarize("MCPServer", &applied(true, Unapplied::default()), s.conditions, Some(2), t(3));
        assert_eq!(s.phase, Phase::Running);
        let r = find(Some(&s.conditions), READY).unwrap();
        assert_eq!((r.status.as_str(), r.last_transition_time.0), ("True", t(3)));
        assert_eq!(find(Some(&s.conditions), FEATURES_APPLIED).unwrap().last_transition_time.0, t(2));
    }

    #[test]
    fn ignored_fields_run_but_the_message_names_them() {
        let s = summarize(
            "MCPRemoteProxy",
            &applied(true, Unapplied { blocking: vec![], ignored: vec!["spec.headerForward"] }),
            Vec::new(),
            Some(1),
            t(1),
        );
        assert_eq!(s.phase, Phase::Running);
        assert!(s.message.starts_with("proxy running") && s.message.contains("spec.headerForward"), "{}", s.message);
    }

    #[test]
    fn conflicts_and_invalid_specs_fail_without_touching_features_applied() {
        let s = summarize(
            "MCPServer",
            &Outcome::NameConflict { kind: "Service", name: "mcp-fetch-proxy".into() },
            Vec::new(),
            Some(1),
            t(1),
        );
        assert_eq!(s.phase, Phase::Failed);
        assert!(s.message.contains("not owned by this MCPServer"), "{}", s.message);
        assert!(find(Some(&s.conditions), FEATURES_APPLIED).is_none());
        let s = summarize(
            "MCPServer",
            &Outcome::Refused("spec.toolConfigRef: MCPToolConfig tools not found".into()),
            Vec::new(),
            Some(1),
            t(1),
        );
        let r = find(Some(&s.conditions), READY).unwrap();
        assert_eq!((s.phase, r.reason.as_str()), (Phase::Failed, INVALID_REFERENCE));
        assert!(r.message.starts_with("spec.toolConfigRef: MCPToolConfig tools not found; the proxy is kept at 0"));
        assert!(!Outcome::Refused(String::new()).waiting_for_proxy());
        let s = summarize("MCPServer", &Outcome::Invalid("bad port".into()), Vec::new(), Some(1), t(1));
        assert_eq!(
            (s.phase, find(Some(&s.conditions), READY).unwrap().reason.as_str()),
            (Phase::Failed, "InvalidSpec")
        );
    }
}
