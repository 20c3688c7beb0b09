//! Decisions of the Cedar authorizer on ToolHive-style policies: one table of requests with the
//! expected allow/deny, then the cases that need their own setup (errors, bounds, entities).
#![allow(clippy::unwrap_used)]

use apiary_policy::Identity;
use apiary_policy::authz::{Authorizer, Feature, MAX_ATTRIBUTES, MAX_GROUPS, MAX_STRING_BYTES, Target};
use apiary_policy::identity::IdentityKind;
use serde_json::{Map, Value, json};

fn authorizer(cedar: Value) -> Authorizer {
    Authorizer::from_value(&json!({"version": "1.0", "type": "cedarv1", "cedar": cedar}), "test").unwrap()
}

fn policies(list: &[&str]) -> Authorizer {
    authorizer(json!({"policies": list, "entities_json": "[]"}))
}

fn who(sub: &str, claims: Value) -> Identity {
    let mut claims: Map<String, Value> = claims.as_object().cloned().unwrap_or_default();
    claims.insert("sub".to_owned(), Value::String(sub.to_owned()));
    Identity { subject: sub.to_owned(), claims, kind: IdentityKind::Jwt }
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// One row of the table: a request and whether it must be allowed.
struct Case {
    name: &'static str,
    policies: &'static [&'static str],
    server: Option<&'static str>,
    claims: Value,
    feature: Feature,
    target: &'static str,
    args: Option<Value>,
    annotations: Option<Value>,
    allowed: bool,
}

const WEATHER: &str = r#"permit(principal, action == Action::"call_tool", resource == Tool::"weather");"#;
const BY_LOCATION: &str = r#"permit(principal, action == Action::"call_tool", resource == Tool::"weather") when { resource.arg_location == "London" || context.arg_location == "Paris" };"#;
const ENG_GROUP: &str = r#"permit(principal in THVGroup::"eng", action == Action::"call_tool", resource);"#;
const ADMIN_ROLE: &str = r#"permit(principal, action == Action::"call_tool", resource == Tool::"weather") when { principal.claim_roles.contains("admin") };"#;
const READ_ONLY: &str = r#"permit(principal, action == Action::"call_tool", resource) when { resource has readOnlyHint && resource.readOnlyHint == true };"#;
const GITHUB_SERVER: &str = r#"permit(principal, action, resource in MCP::"github");"#;
const ALL_TOOLS: &str = r#"permit(principal, action == Action::"call_tool", resource);"#;
const NO_DELETE: &str = r#"forbid(principal, action == Action::"call_tool", resource == Tool::"delete");"#;
const GREETING: &str = r#"permit(principal, action == Action::"get_prompt", resource == Prompt::"greeting");"#;
const PASSWD: &str =
    r#"permit(principal, action == Action::"read_resource", resource == Resource::"file:///etc/passwd");"#;
const SMALL_COUNT: &str = r#"permit(principal, action, resource) when { resource.arg_count < 10 };"#;
const HAS_OPTIONS: &str = r#"permit(principal, action, resource) when { resource has arg_options_present };"#;
const NAME_CLAIM: &str = r#"permit(principal, action, resource) when { context.claim_name == "John Doe" };"#;

fn table() -> Vec<Case> {
    let base = |name, policies, feature, target, allowed| Case {
        name,
        policies,
        server: None,
        claims: json!({}),
        feature,
        target,
        args: None,
        annotations: None,
        allowed,
    };
    vec![
        base("tool: named tool allowed", &[WEATHER], Feature::Tool, "weather", true),
        base("tool: other tool denied", &[WEATHER], Feature::Tool, "news", false),
        base("tool: same name as a prompt is not the tool", &[WEATHER], Feature::Prompt, "weather", false),
        Case {
            args: Some(json!({"location": "London"})),
            ..base("arg: resource.arg matches", &[BY_LOCATION], Feature::Tool, "weather", true)
        },
        Case {
            args: Some(json!({"location": "Paris"})),
            ..base("arg: context.arg matches", &[BY_LOCATION], Feature::Tool, "weather", true)
        },
        Case {
            args: Some(json!({"location": "Rome"})),
            ..base("arg: other value denied", &[BY_LOCATION], Feature::Tool, "weather", false)
        },
        Case {
            args: Some(json!({"count": 3})),
            ..base("arg: integer compared", &[SMALL_COUNT], Feature::Tool, "t", true)
        },
        Case {
            args: Some(json!({"count": 30})),
            ..base("arg: integer too big", &[SMALL_COUNT], Feature::Tool, "t", false)
        },
        Case {
            args: Some(json!({"options": {"a": 1}})),
            ..base("arg: object marks presence", &[HAS_OPTIONS], Feature::Tool, "t", true)
        },
        Case {
            args: Some(json!({"options": "x"})),
            ..base("arg: string is not presence", &[HAS_OPTIONS], Feature::Tool, "t", false)
        },
        Case {
            claims: json!({"groups": ["eng"]}),
            ..base("group: member allowed", &[ENG_GROUP], Feature::Tool, "any", true)
        },
        Case {
            claims: json!({"groups": ["ops"]}),
            ..base("group: non-member denied", &[ENG_GROUP], Feature::Tool, "any", false)
        },
        Case {
            claims: json!({"roles": ["eng"]}),
            ..base("group: roles is a default group claim", &[ENG_GROUP], Feature::Tool, "any", true)
        },
        Case {
            claims: json!({"cognito:groups": ["eng"]}),
            ..base("group: cognito:groups is a default", &[ENG_GROUP], Feature::Tool, "any", true)
        },
        Case {
            claims: json!({"groups": "eng"}),
            ..base("group: a string claim is not a list", &[ENG_GROUP], Feature::Tool, "any", false)
        },
        Case {
            claims: json!({"roles": ["admin"]}),
            ..base("claim: roles contains admin", &[ADMIN_ROLE], Feature::Tool, "weather", true)
        },
        Case {
            claims: json!({"roles": ["user"]}),
            ..base("claim: roles lacks admin", &[ADMIN_ROLE], Feature::Tool, "weather", false)
        },
        Case {
            claims: json!({}),
            ..base("claim: missing claim errors and denies", &[ADMIN_ROLE], Feature::Tool, "weather", false)
        },
        Case {
            claims: json!({"name": "John Doe"}),
            ..base("claim: context.claim_name", &[NAME_CLAIM], Feature::Tool, "t", true)
        },
        Case {
            annotations: Some(json!({"readOnlyHint": true})),
            ..base("annotation: read-only allowed", &[READ_ONLY], Feature::Tool, "t", true)
        },
        Case {
            annotations: Some(json!({"readOnlyHint": false})),
            ..base("annotation: not read-only denied", &[READ_ONLY], Feature::Tool, "t", false)
        },
        base("annotation: unknown denied", &[READ_ONLY], Feature::Tool, "t", false),
        Case {
            annotations: Some(json!({"readOnlyHint": "true"})),
            ..base("annotation: non-boolean ignored", &[READ_ONLY], Feature::Tool, "t", false)
        },
        Case { server: Some("github"), ..base("server: parent matches", &[GITHUB_SERVER], Feature::Tool, "t", true) },
        Case {
            server: Some("github"),
            ..base("server: prompts have the parent too", &[GITHUB_SERVER], Feature::Prompt, "p", true)
        },
        Case {
            server: Some("gitlab"),
            ..base("server: other server denied", &[GITHUB_SERVER], Feature::Tool, "t", false)
        },
        base("server: no server name denied", &[GITHUB_SERVER], Feature::Tool, "t", false),
        base("forbid: wins over permit", &[ALL_TOOLS, NO_DELETE], Feature::Tool, "delete", false),
        base("forbid: others still permitted", &[ALL_TOOLS, NO_DELETE], Feature::Tool, "list", true),
        base("default deny: no permit for prompts", &[ALL_TOOLS], Feature::Prompt, "greeting", false),
        base("prompt: named prompt allowed", &[GREETING], Feature::Prompt, "greeting", true),
        base("prompt: other prompt denied", &[GREETING], Feature::Prompt, "farewell", false),
        base("resource: exact URI allowed", &[PASSWD], Feature::Resource, "file:///etc/passwd", true),
        base("resource: another URI denied", &[PASSWD], Feature::Resource, "file:///etc/shadow", false),
        base("resource: not rewritten to underscores", &[PASSWD], Feature::Resource, "file____etc_passwd", false),
    ]
}

#[test]
fn policy_table() {
    let mut failures = Vec::new();
    for case in table() {
        let mut authz = policies(case.policies);
        if let Some(server) = case.server {
            authz = authz.with_server(server);
        }
        let args = case.args.map(obj);
        let annotations = case.annotations.map(obj);
        let target = Target {
            feature: case.feature,
            name: case.target,
            arguments: args.as_ref(),
            annotations: annotations.as_ref(),
        };
        let decision = authz.authorize(&who("alice", case.claims), &target);
        if decision.allowed != case.allowed {
            failures.push(format!("{}: expected allowed={}, got {decision:?}", case.name, case.allowed));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn decision_names_the_deciding_policies() {
    let authz = policies(&[WEATHER, ALL_TOOLS, NO_DELETE]);
    let alice = who("alice", json!({}));
    let allowed = authz.authorize(&alice, &Target::new(Feature::Tool, "weather"));
    assert!(allowed.allowed);
    assert_eq!(allowed.policies, ["policy0", "policy1"]);
    assert!(allowed.errors.is_empty());

    let denied = authz.authorize(&alice, &Target::new(Feature::Tool, "delete"));
    assert!(!denied.allowed);
    assert_eq!(denied.policies, ["policy2"]);

    let default = authz.authorize(&alice, &Target::new(Feature::Prompt, "x"));
    assert_eq!(default, apiary_policy::authz::Decision { allowed: false, policies: vec![], errors: vec![] });
}

#[test]
fn an_erroring_permit_does_not_allow_even_with_another_permit() {
    // Cedar alone would allow here: it skips policy0 (missing attribute) and policy1 permits.
    let authz = policies(&[r#"permit(principal, action, resource) when { principal.claim_level > 3 };"#, ALL_TOOLS]);
    let decision = authz.authorize(&who("alice", json!({})), &Target::new(Feature::Tool, "t"));
    assert!(!decision.allowed);
    assert_eq!(decision.policies, ["policy0"]);
    assert_eq!(decision.errors.len(), 1);
    assert!(decision.errors[0].contains("claim_level"), "{:?}", decision.errors);

    // With the attribute present the same pair allows.
    let decision = authz.authorize(&who("alice", json!({"level": 5})), &Target::new(Feature::Tool, "t"));
    assert!(decision.allowed, "{decision:?}");
}

#[test]
fn an_erroring_forbid_still_denies() {
    // A forbid whose condition errors (string compared with <) is skipped by Cedar; it must deny.
    let authz = policies(&[ALL_TOOLS, r#"forbid(principal, action, resource) when { resource.arg_path < 3 };"#]);
    let args = obj(json!({"path": "/etc"}));
    let target = Target { feature: Feature::Tool, name: "read", arguments: Some(&args), annotations: None };
    let decision = authz.authorize(&who("alice", json!({})), &target);
    assert!(!decision.allowed);
    assert_eq!(decision.policies, ["policy1"]);
    assert!(!decision.errors.is_empty());
}

#[test]
fn group_and_role_claims_are_configurable() {
    let authz = authorizer(json!({
        "policies": [ENG_GROUP, r#"permit(principal in Team::"sre", action == Action::"get_prompt", resource);"#],
        "group_claim_name": "https://example.com/groups",
    }));
    let alice = who("alice", json!({"https://example.com/groups": ["eng"], "groups": ["ops"]}));
    assert!(authz.authorize(&alice, &Target::new(Feature::Tool, "t")).allowed);
    // A configured claim that is absent falls back to the defaults.
    let bob = who("bob", json!({"groups": ["eng"]}));
    assert!(authz.authorize(&bob, &Target::new(Feature::Tool, "t")).allowed);

    let nested = authorizer(json!({
        "policies": [ENG_GROUP, r#"permit(principal in THVGroup::"sre", action == Action::"get_prompt", resource);"#],
        "group_claim_name": "realm_access.roles",
        "role_claim_name": "team_roles",
    }));
    let carol = who("carol", json!({"realm_access": {"roles": ["eng"]}, "team_roles": ["sre"]}));
    assert!(nested.authorize(&carol, &Target::new(Feature::Tool, "t")).allowed);
    assert!(nested.authorize(&carol, &Target::new(Feature::Prompt, "p")).allowed);
    let dave = who("dave", json!({"realm_access": {"roles": ["ops"]}}));
    assert!(!nested.authorize(&dave, &Target::new(Feature::Tool, "t")).allowed);

    let custom_type = authorizer(json!({
        "policies": [r#"permit(principal in Team::"eng", action, resource);"#],
        "group_entity_type": "Team",
    }));
    let eve = who("eve", json!({"groups": ["eng"]}));
    assert!(custom_type.authorize(&eve, &Target::new(Feature::Tool, "t")).allowed);
    assert!(
        !policies(&[r#"permit(principal in Team::"eng", action, resource);"#])
            .authorize(&eve, &Target::new(Feature::Tool, "t"))
            .allowed
    );
}

#[test]
fn entities_json_supplies_hierarchy_and_attributes() {
    let entities = json!([
        {"uid": {"type": "THVGroup", "id": "eng"}, "parents": [{"type": "THVGroup", "id": "staff"}]},
        {"uid": {"type": "Tool", "id": "weather"}, "attrs": {"owner": "alice"}},
        {"uid": {"type": "Client", "id": "bob"}, "attrs": {"clearance": 5}, "parents": [{"type": "THVGroup", "id": "staff"}]}
    ]);
    let authz = authorizer(json!({
        "policies": [
            r#"permit(principal in THVGroup::"staff", action == Action::"get_prompt", resource);"#,
            r#"permit(principal, action == Action::"call_tool", resource) when { resource has owner && resource.owner == principal.claim_sub };"#,
            r#"permit(principal, action == Action::"read_resource", resource) when { principal has clearance && principal.clearance > 3 && principal.claim_sub == "bob" };"#,
        ],
        "entities_json": entities.to_string(),
    }));
    let alice = who("alice", json!({"groups": ["eng"]}));
    let bob = who("bob", json!({}));
    // eng is in staff (transitively), from the file.
    assert!(authz.authorize(&alice, &Target::new(Feature::Prompt, "p")).allowed);
    assert!(!authz.authorize(&who("zed", json!({"groups": ["ops"]})), &Target::new(Feature::Prompt, "p")).allowed);
    // The file's attribute on Tool::"weather" survives the request's own attributes.
    assert!(authz.authorize(&alice, &Target::new(Feature::Tool, "weather")).allowed);
    assert!(!authz.authorize(&bob, &Target::new(Feature::Tool, "weather")).allowed);
    // The file's attributes and parents of Client::"bob" merge with the token's claims.
    assert!(authz.authorize(&bob, &Target::new(Feature::Resource, "file:///x")).allowed);
    assert!(authz.authorize(&bob, &Target::new(Feature::Prompt, "p")).allowed);
}

#[test]
fn multi_valued_claims_get_a_string_and_a_set() {
    let authz = authorizer(json!({
        "policies": [
            r#"permit(principal, action == Action::"call_tool", resource) when { principal.claimset_scp.contains("Mail.Read") };"#,
            r#"permit(principal, action == Action::"get_prompt", resource) when { context.claim_scp like "*Files.Read*" };"#,
        ],
        "multi_valued_claims": ["scp"],
    }));
    let t = Target::new(Feature::Tool, "t");
    let p = Target::new(Feature::Prompt, "p");
    let as_string = who("a", json!({"scp": "Mail.Read  Files.Read"}));
    let as_array = who("b", json!({"scp": ["Mail.Read", "Files.Read"]}));
    let superset = who("c", json!({"scp": "Mail.ReadWrite"}));
    assert!(authz.authorize(&as_string, &t).allowed);
    assert!(authz.authorize(&as_array, &t).allowed);
    assert!(authz.authorize(&as_string, &p).allowed);
    assert!(authz.authorize(&as_array, &p).allowed);
    assert!(!authz.authorize(&superset, &t).allowed);
}

#[test]
fn nested_claims_are_records() {
    let authz = policies(&[
        r#"permit(principal, action, resource) when { principal.claim_realm_access.roles.contains("admin") && principal.claim_age >= 18 && principal.claim_verified };"#,
    ]);
    let t = Target::new(Feature::Tool, "t");
    assert!(
        authz
            .authorize(&who("a", json!({"realm_access": {"roles": ["admin"]}, "age": 30, "verified": true})), &t)
            .allowed
    );
    assert!(
        !authz
            .authorize(&who("a", json!({"realm_access": {"roles": ["user"]}, "age": 30, "verified": true})), &t)
            .allowed
    );
}

fn write(args: &Map<String, Value>) -> Target<'_> {
    Target { feature: Feature::Tool, name: "write", arguments: Some(args), annotations: None }
}

#[test]
fn values_over_a_bound_are_left_out_and_deny_when_a_policy_names_them() {
    let long = obj(json!({"content": "x".repeat(MAX_STRING_BYTES + 1), "path": "/tmp/a"}));

    // No policy names arg_content: the long value is simply not handed to Cedar.
    let by_path = policies(&[r#"permit(principal, action, resource) when { resource.arg_path like "/tmp/*" };"#]);
    assert!(by_path.authorize(&who("a", json!({})), &write(&long)).allowed);

    // A forbid guarded by `has` would be skipped without the value: the request is refused instead.
    let guarded = policies(&[
        ALL_TOOLS,
        r#"forbid(principal, action, resource) when { resource has arg_content && resource.arg_content like "*secret*" };"#,
    ]);
    let decision = guarded.authorize(&who("a", json!({})), &write(&long));
    assert!(!decision.allowed);
    assert!(decision.errors[0].contains("arg_content"), "{decision:?}");
    let short = obj(json!({"content": "hello"}));
    assert!(guarded.authorize(&who("a", json!({})), &write(&short)).allowed);

    // Too many claims: the ones past the limit are left out.
    let mut claims = Map::new();
    for i in 0..MAX_ATTRIBUTES + 5 {
        claims.insert(format!("c{i:03}"), json!("v"));
    }
    let last = format!("claim_c{:03}", MAX_ATTRIBUTES + 4);
    let names_last = policies(&[&format!(r#"permit(principal, action, resource) when {{ principal has {last} }};"#)]);
    let many = Identity { subject: "a".to_owned(), claims, kind: IdentityKind::Jwt };
    let decision = names_last.authorize(&many, &Target::new(Feature::Tool, "t"));
    assert!(!decision.allowed);
    assert!(decision.errors[0].contains(&last), "{decision:?}");
    assert!(policies(&[ALL_TOOLS]).authorize(&many, &Target::new(Feature::Tool, "t")).allowed);

    // A number beyond a decimal's range has no Cedar value: left out, and named, so denied.
    let amount = policies(&[
        ALL_TOOLS,
        r#"forbid(principal, action, resource) when { resource has arg_amount && resource.arg_amount.greaterThan(decimal("100.0")) };"#,
    ]);
    let huge = obj(json!({"amount": 1e300}));
    assert!(!amount.authorize(&who("a", json!({})), &write(&huge)).allowed);
    let small = obj(json!({"amount": 2.5}));
    assert!(amount.authorize(&who("a", json!({})), &write(&small)).allowed);
    let large = obj(json!({"amount": 250.75}));
    assert!(!amount.authorize(&who("a", json!({})), &write(&large)).allowed);
}

#[test]
fn too_many_groups_deny() {
    let groups: Vec<String> = (0..=MAX_GROUPS).map(|i| format!("g{i}")).collect();
    let decision =
        policies(&[ALL_TOOLS]).authorize(&who("a", json!({"groups": groups})), &Target::new(Feature::Tool, "t"));
    assert!(!decision.allowed);
    assert!(decision.errors[0].contains("groups"), "{decision:?}");
}

#[test]
fn quotes_in_names_cannot_inject() {
    // The name is an id, never policy text: a quote in it is just a character.
    let authz = policies(&[WEATHER]);
    let decision = authz.authorize(&who("a", json!({})), &Target::new(Feature::Tool, r#"weather"); permit(principal"#));
    assert!(!decision.allowed);
    let anonymous = Identity::anonymous();
    assert!(authz.authorize(&anonymous, &Target::new(Feature::Tool, "weather")).allowed);
    let nobody = Identity { subject: String::new(), claims: Map::new(), kind: IdentityKind::Jwt };
    assert!(!authz.authorize(&nobody, &Target::new(Feature::Tool, "weather")).allowed);
}

#[test]
fn lists_are_always_allowed_and_the_authorizer_is_shareable() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Authorizer>();
    let authz = policies(&[WEATHER]);
    for feature in [Feature::Tool, Feature::Prompt, Feature::Resource] {
        assert!(authz.list_allowed(&who("a", json!({})), feature));
    }
}
