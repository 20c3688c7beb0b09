//! The MCPServer status computed from what the reconcile saw: the kind-neutral summary of
//! [`outcome`](super::outcome) (phase, message, `Ready`, `FeaturesApplied`) plus `url`,
//! `readyReplicas` and `observedGeneration`. Pure, so "nothing changed, write nothing" is a
//! plain equality check.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;

use super::outcome::{Outcome, Phase, READY, Summary, find, summarize};
use crate::crd::mcpserver::{MCPServer, MCPServerPhase, MCPServerStatus};

/// The status `server` should have after `outcome`, keeping fields this reconciler does not
/// own (hashes, other conditions) as they are. `now` is used only when a condition flips.
pub fn compute(server: &MCPServer, outcome: &Outcome, now: Timestamp) -> MCPServerStatus {
    let mut status = server.status.clone().unwrap_or_default();
    let generation = server.metadata.generation;
    let Summary { phase, message, conditions } =
        summarize("MCPServer", outcome, status.conditions.take().unwrap_or_default(), generation, now);
    status.phase = Some(match phase {
        Phase::Pending => MCPServerPhase::Pending,
        Phase::Running => MCPServerPhase::Running,
        Phase::Failed => MCPServerPhase::Failed,
    });
    status.message = Some(message);
    status.observed_generation = generation;
    match outcome {
        Outcome::Applied { url, ready_replicas, .. } => {
            status.url = Some(url.clone());
            status.ready_replicas = Some(*ready_replicas);
        }
        _ => status.ready_replicas = None,
    }
    status.conditions = Some(conditions);
    status
}

/// The Ready condition of a status, if any.
pub fn ready_condition(status: Option<&MCPServerStatus>) -> Option<&Condition> {
    find(status?.conditions.as_ref(), READY)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    use super::*;
    use crate::crd::mcpserver::MCPServerSpec;
    use crate::reconcile::features::Unapplied;
    use crate::reconcile::outcome::FEATURES_APPLIED;

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
            unapplied: Unapplied::default(),
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
        let running = Outcome::Applied {
            url: "http://u".into(),
            ready_replicas: 1,
            available: true,
            waiting: None,
            unapplied: Unapplied::default(),
        };
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

    #[test]
    fn each_unenforced_protection_fails_the_server_and_names_the_field() {
        let t = Timestamp::from_second(7).unwrap();
        for (field, value) in crate::reconcile::features::blocking_examples() {
            let spec: MCPServerSpec = serde_json::from_value(json!({"image": "img", field: value})).unwrap();
            let unapplied = crate::reconcile::desired::unapplied(&spec);
            let held = Outcome::Applied {
                url: "http://u".into(),
                ready_replicas: 0,
                available: false,
                waiting: None,
                unapplied,
            };
            let s = compute(&server(1, None), &held, t);
            assert_eq!(s.phase, Some(MCPServerPhase::Failed), "{field}");
            let ready = ready_condition(Some(&s)).unwrap();
            assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "UnsupportedFeature"), "{field}");
            let spec_name = format!("spec.{field}");
            assert!(ready.message.contains(&spec_name), "{field}: {}", ready.message);
            assert!(s.message.as_deref().unwrap().contains(&spec_name), "{field}");
            let features = s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == FEATURES_APPLIED).unwrap();
            assert_eq!((features.status.as_str(), features.reason.as_str()), ("False", "NotImplemented"), "{field}");
            assert!(features.message.contains(&spec_name), "{field}: {}", features.message);

            // Without the field the same server is back to waiting for its proxy.
            let s2 = compute(&server(2, Some(s.clone())), &pending(), t);
            assert_eq!(s2.phase, Some(MCPServerPhase::Pending), "{field}");
            assert_eq!(ready_condition(Some(&s2)).unwrap().reason, "DeploymentUnavailable");
            let features = s2.conditions.as_ref().unwrap().iter().find(|c| c.type_ == FEATURES_APPLIED).unwrap();
            assert_eq!(features.status, "True", "{field}");
        }
    }
}
