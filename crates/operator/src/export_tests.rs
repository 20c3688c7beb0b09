//! Tests of `export`: each exported workload is fed back through the reconcilers' own
//! `desired()`, so what the operator would run is compared with what ran locally.

#![allow(clippy::unwrap_used)] // tests may unwrap

use apiary_config::{
    AuthMode, OidcConfig, OutgoingConfig, PermissionProfile, RunConfig, SecretRef, Source, ToolOverride, Transport,
};
use serde_json::json;

use super::*;
use crate::reconcile::Settings;

fn settings() -> Settings {
    Settings { runner_image: "registry.example/apiary:1".into(), proxy_host: "0.0.0.0".into(), vmcp_image: None }
}

/// A local image workload with every protection the manifests can carry.
fn guarded() -> RunConfig {
    let mut c = RunConfig::builder("fetch", Source::image("ghcr.io/stackloklabs/gofetch/server:latest"))
        .args(["--verbose"])
        .env("LOG_LEVEL", "debug")
        .build()
        .unwrap();
    c.group = "research".into();
    c.secrets.push(SecretRef { name: "GITHUB_TOKEN".into(), target: "GH_TOKEN".into() });
    c.policy.oidc = Some(OidcConfig {
        audience: Some("fetch".into()),
        jwks_url: Some("https://issuer.example/jwks".into()),
        client_id: Some("fetch-proxy".into()),
        client_secret_env: Some("OIDC_SECRET".into()),
        scopes: vec!["openid".into()],
        resource_url: Some("https://fetch.example/mcp".into()),
        ..OidcConfig::new("https://issuer.example")
    });
    c.policy.authz = Some(json!({
        "version": "1.0",
        "type": "cedarv1",
        "cedar": {
            "policies": ["permit(principal, action == Action::\"call_tool\", resource == Tool::\"fetch\");"],
            "entities_json": "[]",
            "group_claim_name": "groups"
        }
    }));
    c.policy.audit = Some(json!({}));
    c.policy.tools.filter = vec!["fetch".into()];
    c.policy.tools.overrides.insert(
        "fetch".into(),
        ToolOverride { name: Some("get_page".into()), description: Some("Fetches a page".into()) },
    );
    c.permission_profile = PermissionProfile::none();
    c
}

/// What the MCPServer reconciler makes of the exported manifests: the RunConfig it writes for
/// the proxy runner.
fn round_trip_server(m: &Manifests) -> RunConfig {
    let ServerObject::Server(server) = &m.server else { panic!("not an MCPServer") };
    let mut server = server.as_ref().clone();
    server.metadata.namespace = Some("ns".into());
    server.metadata.uid = Some("uid-1".into());
    let desired = crate::reconcile::desired::desired(&server, &settings(), &m.referenced()).unwrap();
    assert!(desired.refused.is_none(), "{:?}", desired.refused);
    assert!(desired.unapplied.is_empty(), "{:?}", desired.unapplied);
    let text = desired.config_map.data.unwrap().into_values().next().unwrap();
    RunConfig::from_json_str(&text).unwrap()
}

#[test]
fn an_image_workload_comes_back_with_the_same_server_and_protections() {
    let local = guarded();
    let m = export(&local).unwrap();
    let cluster = round_trip_server(&m);
    assert_eq!(cluster.source, local.source);
    assert_eq!(cluster.args, local.args);
    assert_eq!(cluster.env, local.env);
    assert_eq!(cluster.group, "research");
    assert_eq!(cluster.effective_transport(), Transport::Stdio);
    assert_eq!(cluster.policy.authz, local.policy.authz, "the Cedar document is carried verbatim");
    assert_eq!(cluster.policy.tools, local.policy.tools);
    assert!(cluster.policy.audit.is_some());
    let (got, want) = (cluster.policy.oidc.unwrap(), local.policy.oidc.unwrap());
    assert_eq!(
        (&got.issuer, &got.audience, &got.jwks_url, &got.client_id, &got.scopes, &got.resource_url),
        (&want.issuer, &want.audience, &want.jwks_url, &want.client_id, &want.scopes, &want.resource_url)
    );
    assert!(got.client_secret_env.is_some(), "the client secret comes from a Secret");

    let ServerObject::Server(server) = &m.server else { unreachable!() };
    let secrets = server.spec.secrets.clone().unwrap();
    assert_eq!((secrets[0].name.as_str(), secrets[0].key.as_str()), ("github-token", "GITHUB_TOKEN"));
    assert_eq!(secrets[0].target_env_name.as_deref(), Some("GH_TOKEN"));
    let profile = server.spec.permission_profile.clone().unwrap();
    assert_eq!((profile.type_, profile.name.as_str()), (Some(PermissionProfileType::Builtin), "none"));
    for needed in ["github-token", "fetch-oidc-client"] {
        assert!(m.notes.iter().any(|n| n.contains(needed)), "no note names Secret {needed}: {:?}", m.notes);
    }
}

#[test]
fn the_yaml_stream_lists_referenced_objects_before_the_server_and_parses_back() {
    let m = export(&guarded()).unwrap();
    let yaml = m.to_yaml().unwrap();
    let kinds: Vec<String> = yaml
        .split("---\n")
        .map(|doc| {
            let v: serde_json::Value = serde_saphyr::from_str(doc).unwrap();
            assert!(v["apiVersion"].is_string(), "{doc}");
            v["kind"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(kinds, ["ConfigMap", "MCPOIDCConfig", "MCPToolConfig", "MCPServer"]);
    let server: MCPServer = serde_saphyr::from_str(yaml.rsplit("---\n").next().unwrap()).unwrap();
    assert_eq!(server.spec.image, "ghcr.io/stackloklabs/gofetch/server:latest");
    assert!(!yaml.contains("namespace:"), "the user picks the namespace with kubectl -n");
}

#[test]
fn an_http_image_keeps_its_port_and_a_custom_profile_goes_to_a_config_map() {
    let mut local = RunConfig::builder("web", Source::image("example/web:1"))
        .transport(Transport::StreamableHttp)
        .target_port(9000)
        .build()
        .unwrap();
    local.permission_profile =
        PermissionProfile { name: Some("custom".into()), read: vec!["/data".into()], ..PermissionProfile::none() };
    let m = export(&local).unwrap();
    let ServerObject::Server(server) = &m.server else { panic!() };
    assert_eq!(server.spec.mcp_port, Some(9000));
    let cluster = round_trip_server(&m);
    assert_eq!(cluster.effective_transport(), Transport::StreamableHttp);
    assert_eq!(cluster.target_port, 9000);
    let cm = m.config_maps.iter().find(|c| c.metadata.name.as_deref() == Some("web-permission-profile")).unwrap();
    let text = &cm.data.as_ref().unwrap()[PROFILE_KEY];
    let back: PermissionProfile = serde_json::from_str(text).unwrap();
    assert_eq!(back, local.permission_profile);
}

#[test]
fn a_remote_workload_becomes_a_remote_proxy_with_its_protections() {
    let mut local = RunConfig::builder("notion", Source::remote("https://mcp.notion.example/mcp")).build().unwrap();
    local.policy = guarded().policy;
    let m = export(&local).unwrap();
    let ServerObject::RemoteProxy(proxy) = &m.server else { panic!("not an MCPRemoteProxy") };
    let mut proxy = proxy.as_ref().clone();
    proxy.metadata.namespace = Some("ns".into());
    proxy.metadata.uid = Some("uid-2".into());
    let desired = crate::remoteproxy::desired::desired(&proxy, &settings(), &m.referenced()).unwrap();
    assert!(desired.refused.is_none(), "{:?}", desired.refused);
    let text = desired.config_map.data.unwrap().into_values().next().unwrap();
    let cluster = RunConfig::from_json_str(&text).unwrap();
    assert_eq!(cluster.remote_url(), Some("https://mcp.notion.example/mcp"));
    assert_eq!(cluster.policy.authz, local.policy.authz);
    assert_eq!(cluster.policy.tools, local.policy.tools);
    assert!(cluster.policy.oidc.is_some());
}

#[test]
fn what_a_cluster_cannot_run_or_would_open_is_refused_with_the_reason() {
    let package =
        RunConfig::builder("everything", Source::npx("@modelcontextprotocol/server-everything")).build().unwrap();
    assert!(matches!(export(&package), Err(ExportError::NoImage { kind: "package", .. })));

    let mut bad_name = guarded();
    bad_name.name = "my_fetch".into();
    assert!(export(&bad_name).unwrap_err().to_string().contains("Kubernetes object name"));

    let mut local_user = guarded();
    local_user.policy.oidc = None;
    local_user.policy.auth_mode = AuthMode::Local;
    assert!(matches!(export(&local_user), Err(ExportError::Unsupported { field: "policy.authMode", .. })));

    let mut scopes = guarded();
    scopes.policy.oidc.as_mut().unwrap().required_scopes = vec!["mcp:call".into()];
    assert!(matches!(export(&scopes), Err(ExportError::Unsupported { field: "policy.oidc.requiredScopes", .. })));

    let mut no_audience = guarded();
    no_audience.policy.oidc.as_mut().unwrap().audience = None;
    assert!(matches!(export(&no_audience), Err(ExportError::Unsupported { field: "policy.oidc.audience", .. })));

    let mut outgoing = guarded();
    outgoing.policy.outgoing = OutgoingConfig { bearer_token: Some("x".into()), ..OutgoingConfig::default() };
    assert!(matches!(export(&outgoing), Err(ExportError::Unsupported { field: "policy.outgoing", .. })));
}

#[test]
fn secret_names_map_to_kubernetes_names() {
    assert_eq!(secret_object_name("GITHUB_TOKEN"), "github-token");
    assert_eq!(secret_object_name("api.key"), "api-key");
    let mut c = guarded();
    c.secrets = vec![SecretRef { name: "_x".into(), target: "X".into() }];
    assert!(matches!(export(&c), Err(ExportError::Unsupported { field: "secrets", .. })));
}
