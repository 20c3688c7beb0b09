//! Loading authorization documents: ToolHive's own examples load unchanged, and every refusal
//! says where the mistake is (document line, or policy index and line inside the policy).
#![allow(clippy::unwrap_used)]

use apiary_policy::Identity;
use apiary_policy::authz::{Authorizer, AuthzConfigError, Feature, Target};
use serde_json::json;

fn load(text: &str) -> Result<Authorizer, AuthzConfigError> {
    Authorizer::from_text(text, "authz.yaml")
}

fn err(text: &str) -> AuthzConfigError {
    load(text).unwrap_err()
}

/// The JSON example from ToolHive's docs/authz.md.
const TOOLHIVE_JSON: &str = r#"{
  "version": "1.0",
  "type": "cedarv1",
  "cedar": {
    "policies": [
      "permit(principal, action == Action::\"call_tool\", resource == Tool::\"weather\");",
      "permit(principal, action == Action::\"get_prompt\", resource == Prompt::\"greeting\");",
      "permit(principal, action == Action::\"read_resource\", resource == Resource::\"data\");"
    ],
    "entities_json": "[]"
  }
}"#;

/// The YAML example from ToolHive's docs/authz.md.
const TOOLHIVE_YAML: &str = r#"version: "1.0"
type: cedarv1
cedar:
  policies:
    - 'permit(principal, action == Action::"call_tool", resource == Tool::"weather");'
    - 'permit(principal, action == Action::"get_prompt", resource == Prompt::"greeting");'
    - 'permit(principal, action == Action::"read_resource", resource == Resource::"data");'
  entities_json: "[]"
"#;

#[test]
fn toolhive_examples_load_and_decide_alike() {
    for text in [TOOLHIVE_JSON, TOOLHIVE_YAML] {
        let authz = load(text).unwrap();
        assert!(authz.warnings().is_empty(), "{:?}", authz.warnings());
        let who = Identity::anonymous();
        assert!(authz.authorize(&who, &Target::new(Feature::Tool, "weather")).allowed);
        assert!(authz.authorize(&who, &Target::new(Feature::Prompt, "greeting")).allowed);
        assert!(authz.authorize(&who, &Target::new(Feature::Resource, "data")).allowed);
        assert!(!authz.authorize(&who, &Target::new(Feature::Tool, "greeting")).allowed);
    }
}

#[test]
fn toolhive_extra_keys_are_accepted() {
    let authz = load(
        r#"version: 1.0
type: cedarv1
cedar:
  policies: ['permit(principal, action, resource);']
  entities_json: '[{"uid": {"type": "ClaimGroup", "id": "engineering"}}]'
  group_claim_name: groups
  role_claim_name: roles
  group_entity_type: THVGroup
  primary_upstream_provider: github
  multi_valued_claims: [scp]
  future_option: true
"#,
    )
    .unwrap();
    let warnings = authz.warnings().join("\n");
    assert!(warnings.contains("primary_upstream_provider"), "{warnings}");
    assert!(warnings.contains("cedar.future_option"), "{warnings}");
}

#[test]
fn a_malformed_policy_names_its_index_and_line() {
    let text = json!({
        "version": "1.0",
        "type": "cedarv1",
        "cedar": {"policies": [
            "permit(principal, action, resource);",
            "permit(\n  principal,\n  action == Action::\"call_tool\",\n  resource\n) when { resource.name === \"x\" };",
        ]},
    })
    .to_string();
    let e = err(&text);
    let AuthzConfigError::Policy { index, line, column, .. } = &e else { panic!("{e:?}") };
    assert_eq!((*index, *line), (1, 5), "{e}");
    assert!(*column > 1, "{e}");
    let shown = e.to_string();
    assert!(shown.starts_with("authz.yaml: policy 1, line 5, column "), "{shown}");

    // A policy with a misspelt keyword on its first line.
    let e = err(
        &json!({"version": "1.0", "type": "cedarv1", "cedar": {"policies": ["permitt(principal, action, resource);"]}})
            .to_string(),
    );
    assert!(e.to_string().starts_with("authz.yaml: policy 0, line 1, column 1"), "{e}");
}

#[test]
fn syntax_errors_give_the_document_line() {
    let e = err("{\n  \"version\": \"1.0\",\n  \"type\": \"cedarv1\",\n  \"cedar\": {\"policies\": [}\n}");
    let AuthzConfigError::Syntax { format, line, .. } = &e else { panic!("{e:?}") };
    assert_eq!((*format, *line), ("JSON", 4), "{e}");

    let e = err("version: \"1.0\"\ntype: cedarv1\ncedar:\n  policies: [\"a\"\n  entities_json: x\n");
    let AuthzConfigError::Syntax { format, line, .. } = &e else { panic!("{e:?}") };
    assert_eq!(*format, "YAML");
    assert!(*line >= 4, "{e}");
}

#[test]
fn types_other_than_cedarv1_are_refused() {
    let e = err(r#"{"version": "1.0", "type": "httpv1", "pdp": {"http": {"url": "http://pdp"}}}"#);
    assert!(matches!(e, AuthzConfigError::NotSupportedYet { .. }), "{e:?}");
    assert!(e.to_string().contains("not supported yet"), "{e}");

    let e =
        err(r#"{"version": "1.0", "type": "opa", "cedar": {"policies": ["permit(principal, action, resource);"]}}"#);
    assert!(matches!(&e, AuthzConfigError::UnknownType { found, .. } if found == "opa"), "{e:?}");

    let e = err(r#"{"version": "1.0", "cedar": {"policies": []}}"#);
    assert!(matches!(&e, AuthzConfigError::Field { field, .. } if field == "type"), "{e:?}");
}

#[test]
fn an_empty_policy_list_is_refused() {
    for cedar in [r#"{"policies": []}"#, r#"{"entities_json": "[]"}"#] {
        let e = err(&format!(r#"{{"version": "1.0", "type": "cedarv1", "cedar": {cedar}}}"#));
        assert!(matches!(e, AuthzConfigError::NoPolicies { .. }), "{e:?}");
    }
}

#[test]
fn shape_errors_name_the_field() {
    let cases = [
        (r#"{"type": "cedarv1", "cedar": {"policies": ["permit(principal, action, resource);"]}}"#, "version"),
        (r#"{"version": "1.0", "type": "cedarv1"}"#, "cedar"),
        (
            r#"{"version": "1.0", "type": "cedarv1", "cedar": {"policies": "permit(principal, action, resource);"}}"#,
            "cedar.policies",
        ),
        (r#"{"version": "1.0", "type": "cedarv1", "cedar": {"policies": [3]}}"#, "cedar.policies[0]"),
        (
            r#"{"version": "1.0", "type": "cedarv1", "cedar": {"policies": ["permit(principal, action, resource);"], "group_entity_type": "A::B"}}"#,
            "cedar.group_entity_type",
        ),
        (
            r#"{"version": "1.0", "type": "cedarv1", "cedar": {"policies": ["permit(principal, action, resource);"], "group_entity_type": "has space"}}"#,
            "cedar.group_entity_type",
        ),
    ];
    for (text, expected) in cases {
        let e = err(text);
        assert!(matches!(&e, AuthzConfigError::Field { field, .. } if field == expected), "{text}: {e:?}");
    }
    let e = err("- just\n- a list\n");
    assert!(matches!(&e, AuthzConfigError::Field { field, .. } if field == "."), "{e:?}");
}

#[test]
fn bad_entities_are_refused_with_their_index() {
    let doc = |entities: &str| {
        json!({"version": "1.0", "type": "cedarv1", "cedar": {"policies": ["permit(principal, action, resource);"], "entities_json": entities}})
            .to_string()
    };
    let e = err(&doc("[{"));
    assert!(matches!(e, AuthzConfigError::Entities { index: None, .. }), "{e:?}");
    let e = err(&doc(r#"{"uid": {"type": "A", "id": "b"}}"#));
    assert!(matches!(e, AuthzConfigError::Entities { .. }), "{e:?}");
    let e = err(&doc(r#"[{"uid": {"type": "A", "id": "a"}}, {"uid": "A::b"}]"#));
    assert!(matches!(e, AuthzConfigError::Entities { index: Some(1), .. }), "{e:?}");
    assert!(e.to_string().contains("entity 1"), "{e}");
    let e = err(&doc(r#"[{"uid": {"type": "A", "id": "a"}}, {"uid": {"type": "A", "id": "a"}}]"#));
    assert!(matches!(e, AuthzConfigError::Entities { index: Some(1), .. }), "{e:?}");
}

#[test]
fn oversized_documents_are_refused() {
    let text = format!("# {}\n{TOOLHIVE_YAML}", "x".repeat(apiary_policy::authz::MAX_DOCUMENT_BYTES));
    assert!(matches!(err(&text), AuthzConfigError::TooLarge { .. }));
}
