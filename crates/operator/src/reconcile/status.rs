//! The MCPServer status computed from what the reconcile saw, and the `Ready` condition whose
//! `lastTransitionTime` moves only when its status flips. Pure, so "nothing changed, write
//! nothing" is a plain equality check.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::observe::Observed;
use crate::crd::mcpserver::{MCPServer, MCPServerPhase, MCPServerStatus};

/// Type of the summary condition.
pub const READY: &str = "Ready";

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
    /// Children applied, the proxy served at `url` and seen as `seen`.
    pub fn applied(url: String, seen: Observed) -> Self {
        let Observed { ready_replicas, available, waiting } = seen;
        Outcome::Applied { url, ready_replicas, available, waiting }
    }

    /// `(condition status, reason, message)` of `Ready`.
    fn ready(&self) -> (&'static str, &'static str, String) {
        match self {
            Outcome::Applied { available: true, ready_replicas, .. } => {
                ("True", "DeploymentAvailable", format!("proxy running, {ready_replicas} ready replica(s)"))
            }
            Outcome::Applied { available: false, waiting, .. } => (
                "False",
                "DeploymentUnavailable",
                match waiting {
                    Some(why) => format!("waiting for the proxy Deployment: {why}"),
                    None => "waiting for the proxy Deployment to become available".to_string(),
                },
            ),
            Outcome::NameConflict { kind, name } => (
                "False",
                "NameConflict",
                format!("{kind} {name} exists and is not owned by this MCPServer; not adopting it"),
            ),
            Outcome::Invalid(why) => ("False", "InvalidSpec", why.clone()),
        }
    }
}

/// The status `server` should have after `outcome`, keeping fields this reconciler does not
/// own (hashes, other conditions) as they are. `now` is used only when `Ready` flips.
pub fn compute(server: &MCPServer, outcome: &Outcome, now: Timestamp) -> MCPServerStatus {
    let mut status = server.status.clone().unwrap_or_default();
    let generation = server.metadata.generation;
    let (ready, reason, message) = outcome.ready();
    status.phase = Some(match outcome {
        Outcome::Applied { available: true, .. } => MCPServerPhase::Running,
        Outcome::Applied { .. } => MCPServerPhase::Pending,
        Outcome::NameConflict { .. } | Outcome::Invalid(_) => MCPServerPhase::Failed,
    });
    status.message = Some(message.clone());
    status.observed_generation = generation;
    match outcome {
        Outcome::Applied { url, ready_replicas, .. } => {
            status.url = Some(url.clone());
            status.ready_replicas = Some(*ready_replicas);
        }
        _ => status.ready_replicas = None,
    }
    let condition = Condition {
        type_: READY.to_string(),
        status: ready.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: Time(now),
    };
    status.conditions = Some(set_condition(status.conditions.take().unwrap_or_default(), condition));
    status
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

/// Now, to the second: the apiserver stores `metav1.Time` without fractions, so a finer value
/// would read back different from what was written.
pub fn now_seconds() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

/// The Ready condition of a status, if any.
pub fn ready_condition(status: Option<&MCPServerStatus>) -> Option<&Condition> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == READY)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::mcpserver::MCPServerSpec;

    fn server(generation: i64, status: Option<MCPServerStatus>) -> MCPServer {
        let mut s = MCPServer::new("fetch", MCPServerSpec { image: "img".into(), ..Default::default() });
        s.metadata.generation = Some(generation);
        s.status = status;
        s
    }

    fn pending() -> Outcome {
        Outcome::Applied {
            url: "http://u".into(),
            ready_replicas: 0,
            available: false,
            waiting: Some("ErrImagePull".into()),
        }
    }

    #[test]
    fn pending_then_running_moves_transition_time_once() {
        let t1 = Timestamp::from_second(1_000).unwrap();
        let t2 = Timestamp::from_second(2_000).unwrap();
        let t3 = Timestamp::from_second(3_000).unwrap();
        let s1 = compute(&server(1, None), &pending(), t1);
        assert_eq!(s1.phase, Some(MCPServerPhase::Pending));
        assert!(s1.message.as_deref().unwrap().contains("ErrImagePull"));
        assert_eq!(s1.observed_generation, Some(1));
        // Same outcome later: identical status, so nothing is written.
        let s1b = compute(&server(1, Some(s1.clone())), &pending(), t2);
        assert_eq!(s1b, s1);
        let running = Outcome::Applied { url: "http://u".into(), ready_replicas: 1, available: true, waiting: None };
        let s2 = compute(&server(1, Some(s1.clone())), &running, t2);
        assert_eq!(s2.phase, Some(MCPServerPhase::Running));
        let c2 = ready_condition(Some(&s2)).unwrap();
        assert_eq!((c2.status.as_str(), c2.last_transition_time.0), ("True", t2));
        // A new generation with the same status keeps the transition time.
        let s3 = compute(&server(2, Some(s2.clone())), &running, t3);
        let c3 = ready_condition(Some(&s3)).unwrap();
        assert_eq!((c3.observed_generation, c3.last_transition_time.0), (Some(2), t2));
    }

    #[test]
    fn name_conflict_fails_with_its_reason_and_keeps_other_fields() {
        let mut before = MCPServerStatus { tool_config_hash: Some("h".into()), ..Default::default() };
        before.conditions = Some(vec![Condition {
            type_: "GroupRefValidated".into(),
            status: "True".into(),
            reason: "Ok".into(),
            message: String::new(),
            observed_generation: Some(1),
            last_transition_time: Time(Timestamp::from_second(5).unwrap()),
        }]);
        let s = compute(
            &server(1, Some(before)),
            &Outcome::NameConflict { kind: "Service", name: "mcp-fetch-proxy".into() },
            Timestamp::from_second(9).unwrap(),
        );
        assert_eq!(s.phase, Some(MCPServerPhase::Failed));
        assert_eq!(s.tool_config_hash.as_deref(), Some("h"));
        let ready = ready_condition(Some(&s)).unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "NameConflict"));
        assert_eq!(s.conditions.as_ref().unwrap().len(), 2);
    }
}
