//! Tests of the VirtualMCPServer's status: phases, discovered backends and conditions from
//! each outcome.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use serde_json::{Value, json};

use super::*;
use crate::reconcile::desired::Settings;
use crate::reconcile::features::Unapplied;
use crate::reconcile::outcome::FEATURES_APPLIED;
use crate::vmcp::backends::Found;
use crate::vmcp::desired::desired;

fn vmcp(generation: i64, status: Option<VirtualMCPServerStatus>) -> VirtualMCPServer {
    let mut v: VirtualMCPServer = serde_json::from_value(json!({
        "apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": "VirtualMCPServer",
        "metadata": {"name": "team", "namespace": "tools", "uid": "u-1"},
        "spec": {"incomingAuth": {"type": "anonymous"}, "config": {"groupRef": "eng"}},
    }))
    .unwrap();
    v.metadata.generation = Some(generation);
    v.status = status;
    v
}

fn member<K: serde::de::DeserializeOwned>(kind: &str, name: &str, spec: Value, phase: &str) -> K {
    serde_json::from_value(json!({"apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": kind,
        "metadata": {"name": name, "namespace": "tools"}, "spec": spec, "status": {"phase": phase}}))
    .unwrap()
}

/// The desired state over group `eng` holding server `fetch` in `phase` (no group when `None`).
fn want(phase: Option<&str>) -> Desired {
    let settings = Settings { runner_image: "img".into(), proxy_host: "0.0.0.0".into(), vmcp_image: None };
    let found = Found {
        group: phase.map(|_| serde_json::from_value(json!({"metadata": {"name": "eng"}, "spec": {}})).unwrap()),
        servers: vec![member(
            "MCPServer",
            "fetch",
            json!({"image": "i", "groupRef": "eng"}),
            phase.unwrap_or("Running"),
        )],
        ..Found::default()
    };
    desired(&vmcp(1, None), &settings, &Default::default(), &found).unwrap()
}

fn applied(available: bool) -> Outcome {
    Outcome::Applied {
        url: "http://vmcp-team.tools.svc.cluster.local:4483".into(),
        ready_replicas: i32::from(available),
        available,
        waiting: (!available).then(|| "container vmcp keeps crashing".to_string()),
        unapplied: Unapplied::default(),
    }
}

fn condition<'a>(s: &'a VirtualMCPServerStatus, type_: &str) -> &'a Condition {
    s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == type_).unwrap()
}

fn t(second: i64) -> Timestamp {
    Timestamp::from_second(second).unwrap()
}

#[test]
fn pending_until_a_pod_is_ready_then_ready_with_the_backends_listed() {
    let w = want(Some("Running"));
    let s = compute(&vmcp(1, None), &applied(false), Some(&w), t(1));
    assert_eq!(s.phase, Some(VirtualMCPServerPhase::Pending));
    assert!(s.message.as_deref().unwrap().contains("keeps crashing"), "{:?}", s.message);
    assert_eq!(condition(&s, READY_CONDITION).status, "False");
    assert_eq!(s.url.as_deref(), Some("http://vmcp-team.tools.svc.cluster.local:4483"));
    assert_eq!((s.backend_count, s.observed_generation), (Some(1), Some(1)));
    let b = &s.discovered_backends.as_ref().unwrap()[0];
    assert_eq!(
        (b.name.as_str(), b.url.as_deref(), b.status.as_deref(), b.auth_type.as_deref()),
        (
            "fetch",
            Some("http://mcp-fetch-proxy.tools.svc.cluster.local:8080/mcp"),
            Some("ready"),
            Some("unauthenticated")
        )
    );
    let g = condition(&s, GROUP_REF_VALIDATED);
    assert_eq!((g.status.as_str(), g.reason.as_str()), ("True", "GroupFound"));
    let d = condition(&s, BACKENDS_DISCOVERED);
    assert_eq!((d.status.as_str(), d.message.as_str()), ("True", "1 backend(s) served: fetch"));
    // The same outcome later is the same status: nothing is written.
    assert_eq!(compute(&vmcp(1, Some(s.clone())), &applied(false), Some(&w), t(2)), s);

    let ready = compute(&vmcp(1, Some(s.clone())), &applied(true), Some(&w), t(3));
    assert_eq!(ready.phase, Some(VirtualMCPServerPhase::Ready));
    let r = condition(&ready, READY_CONDITION);
    assert_eq!((r.status.as_str(), r.last_transition_time.0), ("True", t(3)));
    assert_eq!(condition(&ready, GROUP_REF_VALIDATED).last_transition_time.0, t(1), "unchanged condition kept");
    assert_eq!(condition(&ready, FEATURES_APPLIED).status, "True");
}

#[test]
fn a_member_that_is_not_ready_degrades_a_serving_vmcp_and_is_named() {
    let w = want(Some("Pending"));
    let s = compute(&vmcp(1, None), &applied(true), Some(&w), t(1));
    assert_eq!(s.phase, Some(VirtualMCPServerPhase::Degraded));
    let message = s.message.as_deref().unwrap();
    assert!(message.contains("backends not ready: fetch (MCPServer phase Pending)"), "{message}");
    assert_eq!(s.discovered_backends.as_ref().unwrap()[0].status.as_deref(), Some("unavailable"));
    assert_eq!(condition(&s, READY_CONDITION).status, "True", "it serves the others");
}

#[test]
fn a_missing_group_fails_with_both_conditions_saying_so() {
    let w = want(None);
    let outcome = Outcome::Refused(w.refused.clone().unwrap());
    let s = compute(&vmcp(1, None), &outcome, Some(&w), t(1));
    assert_eq!(s.phase, Some(VirtualMCPServerPhase::Failed));
    let g = condition(&s, GROUP_REF_VALIDATED);
    assert_eq!((g.status.as_str(), g.reason.as_str()), ("False", "GroupNotFound"));
    assert!(g.message.contains("MCPGroup eng not found"));
    assert_eq!(condition(&s, BACKENDS_DISCOVERED).status, "False");
    let r = condition(&s, READY_CONDITION);
    assert!(r.message.starts_with("spec.config.groupRef: MCPGroup eng not found"), "{}", r.message);
    assert_eq!(s.url, None, "nothing serves");
}

#[test]
fn an_invalid_spec_fails_and_keeps_the_last_backends() {
    let before = compute(&vmcp(1, None), &applied(true), Some(&want(Some("Running"))), t(1));
    let s = compute(
        &vmcp(2, Some(before.clone())),
        &Outcome::Invalid("spec.config.groupRef is not set".into()),
        None,
        t(2),
    );
    assert_eq!(s.phase, Some(VirtualMCPServerPhase::Failed));
    assert_eq!(condition(&s, READY_CONDITION).reason, "InvalidSpec");
    assert_eq!(s.discovered_backends, before.discovered_backends);
    assert_eq!(s.observed_generation, Some(2));
}
