//! "Accept both, write one": each second spelling is read, the canonical one wins, and a
//! difference between the two is reported as a conflict.

#![allow(clippy::unwrap_used)] // tests may unwrap

use apiary_operator::crd::common::GroupRef;
use apiary_operator::crd::mcpremoteproxy::MCPRemoteProxySpec;
use apiary_operator::crd::mcpserver::{MCPServerSpec, PermissionProfileType, ServerTransport};
use apiary_operator::crd::mcpserverentry::MCPServerEntrySpec;
use apiary_operator::crd::registration::MCPServerRegistrationSpec;
use apiary_operator::crd::virtualmcpserver::{OutgoingAuthSource, VirtualMCPServerSpec};
use apiary_operator::normalize::{Conflict, Normalize};
use serde_json::json;

fn server(spec: serde_json::Value) -> MCPServerSpec {
    serde_json::from_value(spec).unwrap()
}

fn conflict(canonical: &'static str, cv: &str, alias: &'static str, av: &str) -> Conflict {
    Conflict { canonical, alias, canonical_value: cv.into(), alias_value: av.into() }
}

#[test]
fn mcpserver_old_port_names_count_when_alone() {
    let n = server(json!({"image": "i", "port": 9090, "targetPort": 3000})).normalize();
    assert_eq!((n.spec.proxy_port, n.spec.port), (Some(9090), None));
    assert_eq!((n.spec.mcp_port, n.spec.target_port), (Some(3000), None));
    assert!(n.conflicts.is_empty());
}

#[test]
fn mcpserver_canonical_ports_win_and_differences_are_reported() {
    let n = server(json!({
        "image": "i", "proxyPort": 8080, "port": 9090, "mcpPort": 8000, "targetPort": 3000
    }))
    .normalize();
    assert_eq!((n.spec.proxy_port, n.spec.mcp_port), (Some(8080), Some(8000)));
    assert_eq!(
        n.conflicts,
        vec![
            conflict("spec.proxyPort", "8080", "spec.port", "9090"),
            conflict("spec.mcpPort", "8000", "spec.targetPort", "3000"),
        ]
    );
    assert_eq!(n.conflicts[0].to_string(), "spec.proxyPort (8080) and spec.port (9090) differ; using spec.proxyPort");
}

#[test]
fn mcpserver_same_value_twice_is_no_conflict() {
    let n = server(json!({"image": "i", "proxyPort": 8080, "port": 8080})).normalize();
    assert!(n.conflicts.is_empty());
    assert_eq!(n.spec.proxy_port, Some(8080));
}

#[test]
fn mcpserver_defaults_are_applied_in_memory_only() {
    let written = server(json!({"image": "i"}));
    let n = written.normalize();
    assert_eq!((n.spec.proxy_port, n.spec.mcp_port), (Some(8080), Some(8080)));
    assert_eq!(n.spec.transport, Some(ServerTransport::Stdio));
    let profile = n.spec.permission_profile.unwrap();
    assert_eq!((profile.type_, profile.name.as_str()), (Some(PermissionProfileType::Builtin), "network"));
    // The user's spec is untouched.
    assert_eq!(written, server(json!({"image": "i"})));
}

#[test]
fn mcpserver_permission_profile_configmap_spellings_become_one() {
    for spelling in ["configmap", "configMap"] {
        let n = server(json!({
            "image": "i",
            "permissionProfile": {"type": spelling, "name": "profiles", "key": "p.json"}
        }))
        .normalize();
        let p = n.spec.permission_profile.unwrap();
        assert_eq!(p.type_, Some(PermissionProfileType::Configmap), "{spelling}");
        assert_eq!((p.name.as_str(), p.key.as_deref()), ("profiles", Some("p.json")));
        assert!(n.conflicts.is_empty());
    }
}

#[test]
fn group_ref_object_form_becomes_the_string_form() {
    let n = server(json!({"image": "i", "groupRef": {"name": "g"}})).normalize();
    assert_eq!(n.spec.group_ref, Some(GroupRef::from_name("g")));
    let kept = server(json!({"image": "i", "groupRef": 7})).normalize();
    assert_eq!(kept.spec.group_ref.unwrap().raw(), &json!(7), "invalid values stay for validation");
}

#[test]
fn group_ref_accepts_both_forms_and_rejects_the_rest() {
    let parse = |v| serde_json::from_value::<GroupRef>(v).unwrap();
    assert_eq!(parse(json!("g")).name(), Ok("g"));
    assert_eq!(parse(json!({"name": "g"})).name(), Ok("g"));
    assert!(parse(json!("")).name().is_err());
    assert!(parse(json!({"name": ""})).name().is_err());
    assert!(parse(json!({"other": "g"})).name().is_err());
    assert!(parse(json!(["g"])).name().is_err());
    // Kept exactly as written.
    assert_eq!(serde_json::to_value(parse(json!({"name": "g"}))).unwrap(), json!({"name": "g"}));
}

#[test]
fn remote_url_spellings_on_the_remote_kinds() {
    let entry = |spec| serde_json::from_value::<MCPServerEntrySpec>(spec).unwrap().normalize();
    let base = json!({"groupRef": "g", "transport": "sse"});
    let with = |extra: serde_json::Value| {
        let mut v = base.clone();
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        v
    };
    let alone = entry(with(json!({"remoteUrl": "https://a.example/mcp"})));
    assert_eq!(alone.spec.remote_url.as_deref(), Some("https://a.example/mcp"));
    assert_eq!(alone.spec.remote_url_alias, None);
    assert!(alone.conflicts.is_empty());
    let both = entry(with(json!({
        "remoteURL": "https://a.example/mcp", "remoteUrl": "https://b.example/mcp"
    })));
    assert_eq!(both.spec.remote_url.as_deref(), Some("https://a.example/mcp"));
    assert_eq!(
        both.conflicts,
        vec![conflict("spec.remoteURL", "https://a.example/mcp", "spec.remoteUrl", "https://b.example/mcp")]
    );

    let proxy: MCPRemoteProxySpec = serde_json::from_value(json!({
        "remoteURL": "https://a.example/mcp", "remoteUrl": "https://b.example/mcp",
        "groupRef": {"name": "g"}
    }))
    .unwrap();
    let n = proxy.normalize();
    assert_eq!(n.spec.remote_url.as_deref(), Some("https://a.example/mcp"));
    assert_eq!(n.spec.proxy_port, Some(8080));
    assert_eq!(n.spec.group_ref, Some(GroupRef::from_name("g")));
    assert_eq!(n.conflicts.len(), 1);
}

#[test]
fn vmcp_group_lives_in_config_group_ref() {
    let vmcp = |spec| serde_json::from_value::<VirtualMCPServerSpec>(spec).unwrap().normalize();
    let anon = json!({"type": "anonymous"});
    let moved = vmcp(json!({"incomingAuth": anon, "groupRef": {"name": "g"}}));
    assert_eq!(moved.spec.config.as_ref().unwrap().group_ref.as_deref(), Some("g"));
    assert_eq!(moved.spec.group_ref, None);
    assert!(moved.conflicts.is_empty());
    assert_eq!(moved.spec.outgoing_auth.unwrap().source, Some(OutgoingAuthSource::Discovered));

    let both = vmcp(json!({
        "incomingAuth": anon, "groupRef": {"name": "other"}, "config": {"groupRef": "g"}
    }));
    assert_eq!(both.spec.config.unwrap().group_ref.as_deref(), Some("g"));
    assert_eq!(both.conflicts, vec![conflict("spec.config.groupRef", "g", "spec.groupRef.name", "other")]);
}

#[test]
fn registration_prefix_spellings() {
    let reg = |spec| serde_json::from_value::<MCPServerRegistrationSpec>(spec).unwrap().normalize();
    let target = json!({"name": "kubernetes-mcp"});
    let alone = reg(json!({"toolPrefix": "kube_", "targetRef": target}));
    assert_eq!((alone.spec.prefix.as_deref(), alone.spec.tool_prefix.as_deref()), (Some("kube_"), None));
    assert_eq!(alone.spec.path.as_deref(), Some("/mcp"));
    let both = reg(json!({"prefix": "kube_", "toolPrefix": "k8s_", "targetRef": target}));
    assert_eq!(both.spec.prefix.as_deref(), Some("kube_"));
    assert_eq!(both.conflicts, vec![conflict("spec.prefix", "kube_", "spec.toolPrefix", "k8s_")]);
}
