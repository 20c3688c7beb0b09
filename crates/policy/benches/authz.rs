//! Cost of one authorization decision with 20 policies, a realistic token and a tool call with
//! arguments: the per-request work is building the principal, groups and resource entities
//! (`authorize`), or only the resource's once the identity was seen (`authorize_shared`).
#![allow(clippy::unwrap_used)]

use apiary_policy::Identity;
use apiary_policy::authz::{Authorizer, Feature, Target};
use apiary_policy::identity::IdentityKind;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value, json};

fn document(entities: usize) -> Value {
    let mut policies = Vec::new();
    for i in 0..8 {
        policies.push(format!(r#"permit(principal, action == Action::"call_tool", resource == Tool::"tool{i}");"#));
    }
    for i in 0..4 {
        policies
            .push(format!(r#"permit(principal in THVGroup::"team{i}", action == Action::"get_prompt", resource);"#));
    }
    for i in 0..4 {
        policies.push(format!(
            r#"permit(principal, action == Action::"call_tool", resource == Tool::"query") when {{ resource.arg_table == "t{i}" && principal.claim_roles.contains("analyst") }};"#
        ));
    }
    policies.push(r#"permit(principal, action == Action::"call_tool", resource) when { resource has readOnlyHint && resource.readOnlyHint };"#.to_owned());
    policies.push(r#"permit(principal, action == Action::"read_resource", resource in MCP::"bench");"#.to_owned());
    policies.push(r#"forbid(principal, action == Action::"call_tool", resource == Tool::"drop_table");"#.to_owned());
    policies.push(
        r#"forbid(principal, action, resource) when { context has arg_sql && context.arg_sql like "*DROP*" };"#
            .to_owned(),
    );
    let entities: Vec<Value> = (0..entities)
        .map(|i| json!({"uid": {"type": "THVGroup", "id": format!("sub{i}")}, "parents": [{"type": "THVGroup", "id": format!("team{}", i % 4)}]}))
        .collect();
    json!({"version": "1.0", "type": "cedarv1", "cedar": {"policies": policies, "entities_json": Value::Array(entities).to_string()}})
}

fn identity() -> Identity {
    let claims = json!({
        "sub": "user-1234", "iss": "https://idp.example.com", "aud": "apiary", "exp": 1_900_000_000, "iat": 1_800_000_000,
        "email": "user@example.com", "name": "A User", "roles": ["analyst", "viewer"],
        "groups": ["sub1", "sub2", "eng"], "realm_access": {"roles": ["offline_access"]},
    });
    Identity { subject: "user-1234".to_owned(), claims: claims.as_object().cloned().unwrap(), kind: IdentityKind::Jwt }
}

fn bench(c: &mut Criterion) {
    let who = identity();
    let args: Map<String, Value> = json!({"table": "t2", "sql": "SELECT 1", "limit": 10}).as_object().cloned().unwrap();
    let annotations: Map<String, Value> = json!({"readOnlyHint": false}).as_object().cloned().unwrap();
    let query =
        Target { feature: Feature::Tool, name: "query", arguments: Some(&args), annotations: Some(&annotations) };
    for entities in [0, 50] {
        let authz = Authorizer::from_value(&document(entities), "bench").unwrap().with_server("bench");
        assert!(authz.authorize(&who, &query).allowed);
        c.bench_function(&format!("authorize tools/call allowed, 20 policies, {entities} static entities"), |b| {
            b.iter(|| authz.authorize(&who, &query))
        });
        let shared = std::sync::Arc::new(who.clone());
        c.bench_function(
            &format!("authorize_shared tools/call allowed, 20 policies, {entities} static entities"),
            |b| b.iter(|| authz.authorize_shared(&shared, &query)),
        );
        let other = Target::new(Feature::Prompt, "unknown");
        c.bench_function(&format!("authorize prompts/get via group, 20 policies, {entities} static entities"), |b| {
            b.iter(|| authz.authorize(&who, &other))
        });
    }
    // The end-to-end benchmark's document and call (`crates/bench/policy-bench.sh`): `echo` allowed
    // to a member of `engineering`.
    let proxy_doc = include_str!("../../bench/policy/cedar-20.json");
    let authz = Authorizer::from_text(proxy_doc, "cedar-20.json").unwrap().with_server("bench");
    let echo_args: Map<String, Value> = json!({"text": "0123456789abcdef"}).as_object().cloned().unwrap();
    let echo = Target { feature: Feature::Tool, name: "echo", arguments: Some(&echo_args), annotations: None };
    let mut member = identity();
    member.claims.insert("groups".to_owned(), json!(["engineering"]));
    assert!(authz.authorize(&member, &echo).allowed);
    c.bench_function("authorize tools/call echo, cedar-20.json (policy-bench.sh)", |b| {
        b.iter(|| authz.authorize(&member, &echo))
    });
    // As the proxy decides: one shared identity per verified token, its principal and the
    // caller-only policies' outcome kept from its first request.
    let shared = std::sync::Arc::new(member.clone());
    assert!(authz.authorize_shared(&shared, &echo).allowed);
    c.bench_function("authorize_shared tools/call echo, cedar-20.json (policy-bench.sh)", |b| {
        b.iter(|| authz.authorize_shared(&shared, &echo))
    });
    let text = document(0).to_string();
    c.bench_function("load a 20-policy document", |b| b.iter(|| Authorizer::from_text(&text, "bench").unwrap()));
}

criterion_group!(benches, bench);
criterion_main!(benches);
