//! The load-time analysis (attributes built only when read, policies evaluated only when their
//! scope can match) must not change any decision: random requests are decided twice, once as
//! analysed and once building every attribute against the whole policy set, and the two
//! [`Decision`]s (allowed, deciding policies, error texts) must be identical; so must the
//! decisions made through the per-identity principal cache (`principal`).
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, LazyLock};

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::{Authorizer, Decision, Feature, Target};
use crate::Identity;
use crate::identity::IdentityKind;

/// Policies reading claims, arguments, annotations and fixed attributes through entities and the
/// context, some erroring on absent or mistyped attributes, with groups, a server parent and a
/// static entity that shares a request entity's uid.
const POLICIES: [&str; 14] = [
    r#"permit(principal in THVGroup::"eng", action == Action::"call_tool", resource == Tool::"echo");"#,
    r#"forbid(principal, action == Action::"call_tool", resource == Tool::"echo") when { resource has arg_text && resource.arg_text == "no" };"#,
    r#"permit(principal, action, resource) when { principal.claim_role == "admin" };"#,
    r#"permit(principal, action == Action::"call_tool", resource) when { resource has readOnlyHint && resource.readOnlyHint };"#,
    r#"permit(principal, action == Action::"get_prompt", resource == Prompt::"p") when { context.arg_n > 3 };"#,
    r#"forbid(principal, action, resource) when { principal has claim_suspended && principal.claim_suspended == true };"#,
    r#"permit(principal, action == Action::"read_resource", resource) when { resource.uri like "file://*" };"#,
    r#"permit(principal, action, resource in MCP::"srv") when { context has claim_tier && context.claim_tier == "gold" };"#,
    r#"permit(principal, action, resource) when { principal has claimset_scope && principal.claimset_scope.contains("write") };"#,
    r#"forbid(principal, action == Action::"call_tool", resource) when { resource has arg_list_present };"#,
    r#"permit(principal, action, resource == Tool::"owned") when { resource.owner == principal.claim_email };"#,
    r#"permit(principal, action, resource) when { resource.name == "named" && resource.feature == "tool" };"#,
    r#"permit(principal, action == Action::"call_tool", resource) when { principal.claim_level < 5 };"#,
    r#"permit(principal, action in [Action::"get_prompt"], resource is Prompt) when { principal["cl\u{61}im_x"] == 1 };"#,
];

/// Uses `context` whole, so every claim and argument goes into the context.
const CONTEXT_WHOLE: &str = r#"forbid(principal, action, resource) when { context == {"arg_text": "whole"} };"#;

/// With every policy, or without the one whose scope reads the resource's ancestors
/// (`resource in MCP::"srv"`), which makes every resource's per-request policies look at the
/// resource alone (`analysis::sees_only_the_resource`), so both ways of evaluating them are tried.
fn document_with(extra: Option<&str>, without_ancestors: bool) -> Value {
    let mut policies: Vec<&str> = POLICIES.to_vec();
    if without_ancestors {
        policies[7] =
            r#"permit(principal, action, resource) when { context has claim_tier && context.claim_tier == "gold" };"#;
    }
    policies.extend(extra);
    let entities = json!([{"uid": {"type": "Tool", "id": "owned"}, "attrs": {"owner": "a@example.com", "name": "x"}, "parents": []}]);
    json!({"version": "1.0", "type": "cedarv1", "cedar": {
        "policies": policies, "entities_json": entities.to_string(), "multi_valued_claims": ["scope"]}})
}

fn document(extra: Option<&str>) -> Value {
    document_with(extra, false)
}

/// The same document decided with no analysis: every attribute built, every policy evaluated.
fn unanalysed(doc: &Value) -> Authorizer {
    let mut authz = Authorizer::from_value(doc, "test").unwrap().with_server("srv");
    authz.usage.build_everything();
    authz.applicable.clear();
    authz
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        2 => any::<bool>().prop_map(Value::Bool),
        2 => (-3i64..10).prop_map(|n| json!(n)),
        1 => Just(json!(2.5)),
        4 => prop::sample::select(vec!["admin", "gold", "no", "whole", "write read", "a@example.com", "x"])
            .prop_map(|s| json!(s)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-c]", inner, 0..3).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Each key present three times in four (so policies without `has` guards often evaluate
/// rather than error), with any value.
fn map(keys: &'static [&'static str]) -> impl Strategy<Value = Map<String, Value>> {
    let values = keys.iter().map(|_| prop::option::weighted(0.75, value())).collect::<Vec<_>>();
    values.prop_map(move |values| keys.iter().zip(values).filter_map(|(k, v)| Some(((*k).to_owned(), v?))).collect())
}

fn claims() -> impl Strategy<Value = Map<String, Value>> {
    let groups = prop::sample::subsequence(vec!["eng", "ops"], 0..=2).prop_map(|g| json!(g));
    let keys = &["role", "tier", "suspended", "level", "email", "scope", "x", "other"];
    (map(keys), prop::option::of(groups)).prop_map(|(mut claims, groups)| {
        if let Some(g) = groups {
            claims.insert("groups".to_owned(), g);
        }
        claims
    })
}

fn target() -> impl Strategy<Value = (Feature, &'static str)> {
    prop_oneof![
        prop::sample::select(vec!["echo", "owned", "named", "other"]).prop_map(|n| (Feature::Tool, n)),
        prop::sample::select(vec!["p", "named"]).prop_map(|n| (Feature::Prompt, n)),
        prop::sample::select(vec!["file:///etc", "http://x"]).prop_map(|n| (Feature::Resource, n)),
    ]
}

fn decide(authz: &Authorizer, claims: &Map<String, Value>, what: &Target<'_>) -> Decision {
    let who = Identity { subject: "user".to_owned(), claims: claims.clone(), kind: IdentityKind::Jwt };
    authz.authorize(&who, what)
}

/// The same through the per-identity cache: its first request builds the principal, the second
/// reuses it, and both must decide as [`decide`] does. `before`: a request the same identity
/// made first (same resource, other arguments and annotations), whose kept outcomes must not
/// leak into this one's.
fn decide_shared(
    authz: &Authorizer,
    claims: &Map<String, Value>,
    before: &Target<'_>,
    what: &Target<'_>,
) -> [Decision; 3] {
    let who = Arc::new(Identity { subject: "user".to_owned(), claims: claims.clone(), kind: IdentityKind::Jwt });
    [authz.authorize_shared(&who, before), authz.authorize_shared(&who, what), authz.authorize_shared(&who, what)]
}

/// The eight authorizers (analysed or not, with or without the whole-context policy, with or
/// without the ancestor-reading one), built once.
static AUTHORIZERS: LazyLock<[(Authorizer, Authorizer); 4]> = LazyLock::new(|| {
    [(None, false), (Some(CONTEXT_WHOLE), false), (None, true), (Some(CONTEXT_WHOLE), true)].map(|(extra, without)| {
        let doc = document_with(extra, without);
        (Authorizer::from_value(&doc, "test").unwrap().with_server("srv"), unanalysed(&doc))
    })
});

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn analysis_changes_no_decision(
        claims in claims(),
        (feature, name) in target(),
        args in prop::option::of(map(&["text", "n", "list", "other"])),
        read_only in prop::option::of(any::<bool>()),
        whole in any::<bool>(),
        without_ancestors in any::<bool>(),
        args_before in prop::option::of(map(&["text", "n", "list", "other"])),
        read_only_before in prop::option::of(any::<bool>()),
    ) {
        let (analysed, full) = &AUTHORIZERS[usize::from(whole) + 2 * usize::from(without_ancestors)];
        let hints = |read_only: Option<bool>| -> Option<Map<String, Value>> {
            read_only.map(|b| json!({"readOnlyHint": b, "destructiveHint": "no"}).as_object().cloned().unwrap())
        };
        let (annotations, annotations_before) = (hints(read_only), hints(read_only_before));
        let what = Target { feature, name, arguments: args.as_ref(), annotations: annotations.as_ref() };
        let before =
            Target { feature, name, arguments: args_before.as_ref(), annotations: annotations_before.as_ref() };
        let expected = decide(full, &claims, &what);
        prop_assert_eq!(&decide(analysed, &claims, &what), &expected);
        let [first, again @ ..] = decide_shared(analysed, &claims, &before, &what);
        prop_assert_eq!(&first, &decide(full, &claims, &before));
        for decision in again {
            prop_assert_eq!(&decision, &expected);
        }
    }
}

#[test]
fn the_analysis_prunes_and_still_allows_and_denies() {
    // Guards the property test against comparing two authorizers that never decide anything.
    let doc = document(None);
    let authz = Authorizer::from_value(&doc, "test").unwrap().with_server("srv");
    assert!(!authz.usage.reads("claim_other"));
    assert!(authz.usage.reads("claim_x"), "escaped names are read too");
    assert!(authz.usage.context_reads("arg_n") && authz.usage.context_reads("claim_tier"));
    assert!(!authz.usage.context_reads("claim_role"), "read from the principal only");
    let eng = json!({"groups": ["eng"], "role": "user", "level": 9}).as_object().cloned().unwrap();
    assert!(decide(&authz, &eng, &Target::new(Feature::Tool, "echo")).allowed);
    let no = json!({"text": "no"}).as_object().cloned().unwrap();
    let echo_no = Target { feature: Feature::Tool, name: "echo", arguments: Some(&no), annotations: None };
    let denied = decide(&authz, &eng, &echo_no);
    assert!(!denied.allowed);
    assert_eq!(denied.policies, ["policy1"]);
}

#[test]
fn both_ways_of_evaluating_per_request_policies_are_tried() {
    // Guards the property test: one document evaluates them against the resource alone.
    let uid = |text: &str| text.parse().unwrap();
    for (without_ancestors, alone) in [(false, false), (true, true)] {
        let (authz, _) = &AUTHORIZERS[2 * usize::from(without_ancestors)];
        let tools = &authz.applicable[&Feature::Tool];
        for tool in [r#"Tool::"echo""#, r#"Tool::"named""#] {
            let split = tools.for_resource(&uid(tool));
            assert!(split.has_per_request && split.has_per_tool && split.has_per_caller, "{tool}");
            assert_eq!(split.per_request_sees_only_the_resource, alone, "{tool}");
        }
    }
}

#[test]
fn a_resource_in_a_cycle_is_never_evaluated_alone() {
    // The server's entity has the tool as its parent: adding the tool (parent: the server) makes
    // a cycle, which Cedar refuses; the resource-alone store would not see it.
    let doc = json!({"version": "1.0", "type": "cedarv1", "cedar": {"policies": [
        // Per request only, and looking at the resource alone: nothing kept needs the whole store.
        r#"permit(principal, action, resource) unless { resource has arg_text && resource.arg_text == "no" };"#,
    ], "entities_json": json!([{"uid": {"type": "MCP", "id": "srv"}, "parents": [{"type": "Tool", "id": "echo"}]}]).to_string()}});
    let authz = Authorizer::from_value(&doc, "test").unwrap().with_server("srv");
    let claims = Map::new();
    for name in ["echo", "other"] {
        let what = Target::new(Feature::Tool, name);
        let expected = decide(&unanalysed(&doc), &claims, &what);
        assert_eq!(expected.allowed, name == "other", "{expected:?}");
        for decision in decide_shared(&authz, &claims, &what, &what) {
            assert_eq!(decision, expected);
        }
    }
}

#[test]
fn a_left_out_attribute_named_with_escapes_denies() {
    // `principal["cl\u{61}im_x"]` names claim_x though the text never spells it.
    let authz = Authorizer::from_value(&document(None), "test").unwrap();
    let claims = json!({"groups": ["eng"], "role": "user", "level": 9, "x": null}).as_object().cloned().unwrap();
    let decision = decide(&authz, &claims, &Target::new(Feature::Tool, "echo"));
    assert!(!decision.allowed);
    assert!(decision.errors[0].contains("claim_x was left out"), "{decision:?}");
}

#[test]
fn per_request_policies_are_decided_without_cedar_and_agree() {
    // Guards the property test: with the resource seen alone and every per-request policy in
    // `direct`'s subset, a caller's later requests are decided without Cedar; with the policy
    // using the context whole, never.
    let uid = |text: &str| text.parse().unwrap();
    for (index, compiled) in [(2, true), (3, false)] {
        let (authz, full) = &AUTHORIZERS[index];
        let split = authz.applicable[&Feature::Tool].for_resource(&uid(r#"Tool::"echo""#));
        assert_eq!(split.direct.is_some(), compiled, "authorizer {index}");
        let claims = json!({"groups": ["eng"], "role": "user", "level": 9}).as_object().cloned().unwrap();
        let who = Arc::new(Identity { subject: "user".to_owned(), claims: claims.clone(), kind: IdentityKind::Jwt });
        for (i, (text, allowed)) in
            [("yes", true), ("no", false), ("maybe", true), ("yes", true)].into_iter().enumerate()
        {
            let args = json!({"text": text}).as_object().cloned().unwrap();
            let what = Target { feature: Feature::Tool, name: "echo", arguments: Some(&args), annotations: None };
            let before = super::DIRECT_DECISIONS.with(std::cell::Cell::get);
            let decision = authz.authorize_shared(&who, &what);
            let direct = super::DIRECT_DECISIONS.with(std::cell::Cell::get) > before;
            assert_eq!(decision, decide(full, &claims, &what), "{text}");
            assert_eq!(decision.allowed, allowed, "{text}: {decision:?}");
            // The first request keeps the other policies' outcomes; later ones need no Cedar.
            assert_eq!(direct, compiled && i > 0, "{text}");
        }
        // A missing argument errs in no policy here; a list argument is `arg_text_present`.
        let list = json!({"text": ["a"]}).as_object().cloned().unwrap();
        let what = Target { feature: Feature::Tool, name: "echo", arguments: Some(&list), annotations: None };
        assert_eq!(authz.authorize_shared(&who, &what), decide(full, &claims, &what));
    }
}
