//! The MCPRemoteProxy status computed from what the reconcile saw: the kind-neutral summary of
//! [`outcome`](crate::reconcile::outcome) (phase, message, `Ready`, `FeaturesApplied`) plus
//! `url` and `observedGeneration`. Pure, so "nothing changed, write nothing" is a plain
//! equality check.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;

use crate::crd::mcpremoteproxy::{MCPRemoteProxy, MCPRemoteProxyPhase, MCPRemoteProxyStatus};
use crate::reconcile::outcome::{Outcome, Phase, READY, Summary, find, summarize};

/// The status `proxy` should have after `outcome`, keeping fields this reconciler does not own
/// (hashes, externalUrl, other conditions) as they are. `now` is used only when a condition flips.
pub fn compute(proxy: &MCPRemoteProxy, outcome: &Outcome, now: Timestamp) -> MCPRemoteProxyStatus {
    let mut status = proxy.status.clone().unwrap_or_default();
    let generation = proxy.metadata.generation;
    let Summary { phase, message, conditions } =
        summarize("MCPRemoteProxy", outcome, status.conditions.take().unwrap_or_default(), generation, now);
    status.phase = Some(match phase {
        Phase::Pending => MCPRemoteProxyPhase::Pending,
        Phase::Running => MCPRemoteProxyPhase::Ready,
        Phase::Failed => MCPRemoteProxyPhase::Failed,
    });
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
    find(status?.conditions.as_ref(), READY)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::crd::mcpremoteproxy::MCPRemoteProxySpec;
    use crate::reconcile::features::Unapplied;
    use crate::reconcile::outcome::FEATURES_APPLIED;

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
        let ignored = Unapplied { blocking: vec![], ignored: vec!["spec.headerForward"] };
        let s = compute(&proxy(1, None), &applied(true, ignored), t);
        assert_eq!(s.phase, Some(MCPRemoteProxyPhase::Ready));
        let f = condition(&s, FEATURES_APPLIED);
        assert_eq!((f.status.as_str(), f.reason.as_str()), ("False", "NotImplemented"));
        assert!(f.message.contains("spec.headerForward"), "{}", f.message);
        assert!(s.message.as_deref().unwrap().contains("spec.headerForward"), "the phase message names it too");

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

    #[test]
    fn each_unenforced_protection_fails_the_proxy_and_names_the_field() {
        let t = Timestamp::from_second(7).unwrap();
        for (field, value) in crate::reconcile::features::blocking_examples() {
            if ["webhookConfigRef", "rateLimiting"].contains(&field) {
                continue; // not MCPRemoteProxy fields
            }
            let spec: MCPRemoteProxySpec =
                serde_json::from_value(json!({"remoteURL": "https://mcp.example.com/mcp", field: value})).unwrap();
            let s = compute(&proxy(1, None), &applied(false, crate::remoteproxy::desired::unapplied(&spec)), t);
            assert_eq!(s.phase, Some(MCPRemoteProxyPhase::Failed), "{field}");
            let spec_name = format!("spec.{field}");
            let r = condition(&s, READY);
            assert_eq!((r.status.as_str(), r.reason.as_str()), ("False", "UnsupportedFeature"), "{field}");
            assert!(r.message.contains(&spec_name), "{field}: {}", r.message);
            assert!(condition(&s, FEATURES_APPLIED).message.contains(&spec_name), "{field}");
            let back = compute(&proxy(2, Some(s.clone())), &applied(false, Unapplied::default()), t);
            assert_eq!(back.phase, Some(MCPRemoteProxyPhase::Pending), "{field}");
        }
    }
}
