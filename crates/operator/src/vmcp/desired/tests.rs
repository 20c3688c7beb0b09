//! Tests of the VirtualMCPServer's desired children: names, labels, RBAC per mode, the
//! config per backend kind, the checksum that ignores membership, and fail-closed fields.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::*;
use crate::crd::externalauth::MCPExternalAuthConfig;
use crate::reconcile::labels::CHECKSUM_ANNOTATION;
use crate::reconcile::policy::fixtures;
use crate::vmcp::backends::Found;

fn settings() -> Settings {
    Settings { runner_image: "registry.example/apiary:1".into(), proxy_host: "0.0.0.0".into(), vmcp_image: None }
}

fn vmcp(spec: Value) -> VirtualMCPServer {
    serde_json::from_value(json!({
        "apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": "VirtualMCPServer",
        "metadata": {"name": "team", "namespace": "tools", "uid": "u-1"}, "spec": spec,
    }))
    .unwrap()
}

fn anonymous() -> Value {
    json!({"incomingAuth": {"type": "anonymous"}, "config": {"groupRef": "eng"}})
}

fn obj<K: DeserializeOwned>(kind: &str, name: &str, spec: Value, status: Value) -> K {
    serde_json::from_value(json!({
        "apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": kind,
        "metadata": {"name": name, "namespace": "tools"}, "spec": spec, "status": status,
    }))
    .unwrap()
}

fn header_auth() -> MCPExternalAuthConfig {
    obj(
        "MCPExternalAuthConfig",
        "partner-key",
        json!({"type": "headerInjection", "headerInjection": {
            "headerName": "X-API-Key", "valueSecretRef": {"name": "partner-key", "key": "value"}}}),
        json!({}),
    )
}

/// The group `eng` with a running MCPServer, a pending MCPRemoteProxy, a Valid entry with
/// headers, a CA bundle and header auth, a Failed entry, and a server of another group.
fn found() -> Found {
    Found {
        group: Some(obj("MCPGroup", "eng", json!({}), json!({}))),
        servers: vec![
            obj("MCPServer", "fetch", json!({"image": "img", "groupRef": "eng"}), json!({"phase": "Running"})),
            obj("MCPServer", "other", json!({"image": "img", "groupRef": "ops"}), json!({"phase": "Running"})),
        ],
        proxies: vec![obj(
            "MCPRemoteProxy",
            "remote",
            json!({"remoteURL": "https://r.example.com/sse", "transport": "sse", "proxyPort": 9000, "groupRef": {"name": "eng"}}),
            json!({"phase": "Pending"}),
        )],
        entries: vec![
            obj(
                "MCPServerEntry",
                "partner",
                json!({
                    "remoteURL": "https://mcp.partner.example.com/mcp", "transport": "streamable-http",
                    "groupRef": "eng", "allowPrivateEndpoint": true,
                    "externalAuthConfigRef": {"name": "partner-key"},
                    "caBundleRef": {"configMapRef": {"name": "partner-ca", "key": "ca.crt"}},
                    "headerForward": {
                        "addPlaintextHeaders": {"X-Tenant-ID": "engineering"},
                        "addHeadersFromSecret": [{"headerName": "X-Secret", "valueSecretRef": {"name": "s", "key": "k"}}],
                    },
                }),
                json!({"phase": "Valid"}),
            ),
            obj(
                "MCPServerEntry",
                "broken",
                json!({"remoteURL": "http://127.0.0.1/mcp", "transport": "streamable-http", "groupRef": "eng"}),
                json!({"phase": "Failed", "conditions": [{"type": "Valid", "status": "False", "reason": "BlockedEndpoint",
                    "message": "loopback", "lastTransitionTime": "2025-01-01T00:00:00Z"}]}),
            ),
        ],
        auth_configs: [("partner-key".to_string(), header_auth())].into(),
    }
}

fn pod(d: &Desired) -> &PodSpec {
    d.deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn container(d: &Desired) -> &Container {
    &pod(d).containers[0]
}

fn template_checksum_of(d: &Desired) -> String {
    let meta = d.deployment.spec.as_ref().unwrap().template.metadata.as_ref().unwrap();
    meta.annotations.as_ref().unwrap()[CHECKSUM_ANNOTATION].clone()
}

#[test]
fn children_have_the_names_labels_owner_and_pod_of_names_md() {
    let d = desired(&vmcp(anonymous()), &settings(), &Default::default(), &found()).unwrap();
    assert_eq!(d.deployment.metadata.name.as_deref(), Some("vmcp-team"));
    assert_eq!(d.service.metadata.name.as_deref(), Some("vmcp-team"));
    assert_eq!(d.config_map.metadata.name.as_deref(), Some("team-vmcp-config"));
    for name in [&d.account.metadata.name, &d.role.metadata.name, &d.binding.metadata.name] {
        assert_eq!(name.as_deref(), Some("team-vmcp"));
    }
    for meta in [&d.deployment.metadata, &d.service.metadata, &d.config_map.metadata, &d.role.metadata] {
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["app.kubernetes.io/name"], "virtualmcpserver");
        assert_eq!(labels["app.kubernetes.io/instance"], "team");
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("VirtualMCPServer", "u-1", Some(true))
        );
    }
    let c = container(&d);
    assert_eq!(c.name, "vmcp");
    assert_eq!(c.image.as_deref(), Some("registry.example/apiary:1"), "the runner image when VMCP_IMAGE is unset");
    assert_eq!(
        c.args.as_ref().unwrap().join(" "),
        "vmcp serve --config /etc/vmcp-config/config.yaml --host 0.0.0.0 --port 4483"
    );
    let port = &c.ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.container_port), (Some("http"), 4483));
    assert_eq!(c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/health"));
    let mount = &c.volume_mounts.as_ref().unwrap()[0];
    assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/etc/vmcp-config", Some(true)));
    assert_eq!(pod(&d).volumes.as_ref().unwrap()[0].config_map.as_ref().unwrap().name, "team-vmcp-config");
    assert_eq!(pod(&d).service_account_name.as_deref(), Some("team-vmcp"));
    let selector = d.deployment.spec.as_ref().unwrap().selector.match_labels.clone().unwrap();
    assert_eq!(selector, desired_selector());
    let svc = d.service.spec.as_ref().unwrap();
    assert_eq!(svc.selector.clone().unwrap(), desired_selector());
    assert_eq!((svc.type_.as_deref(), svc.session_affinity.as_deref()), (Some("ClusterIP"), Some("ClientIP")));
    assert_eq!(svc.ports.as_ref().unwrap()[0].port, 4483);
    assert!(d.config_map.data.as_ref().unwrap().contains_key("config.yaml"));
    assert_eq!(url("team", "tools"), "http://vmcp-team.tools.svc.cluster.local:4483");

    let mut s = settings();
    s.vmcp_image = Some("registry.example/vmcp:2".into());
    let mut spec = anonymous();
    spec["serviceType"] = json!("LoadBalancer");
    spec["replicas"] = json!(2);
    let d = desired(&vmcp(spec), &s, &Default::default(), &found()).unwrap();
    assert_eq!(container(&d).image.as_deref(), Some("registry.example/vmcp:2"));
    assert_eq!(d.service.spec.as_ref().unwrap().type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(d.deployment.spec.as_ref().unwrap().replicas, Some(2));
}

fn desired_selector() -> Labels {
    selector("team")
}

#[test]
fn discovered_mode_reads_the_group_kinds_and_inline_mode_nothing() {
    let d = desired(&vmcp(anonymous()), &settings(), &Default::default(), &found()).unwrap();
    let rules = d.role.rules.as_ref().unwrap();
    assert_eq!(rules.len(), 2);
    assert_eq!(
        rules[0].resources.as_ref().unwrap(),
        &["mcpservers", "mcpremoteproxies", "mcpserverentries", "mcpgroups", "mcpexternalauthconfigs"]
    );
    assert_eq!(rules[1].resources.as_ref().unwrap(), &["configmaps", "secrets"]);
    assert!(rules.iter().all(|r| r.verbs == ["get", "list", "watch"]), "read only");

    let mut spec = anonymous();
    spec["outgoingAuth"] = json!({"source": "inline"});
    spec["config"]["backends"] =
        json!([{"name": "static", "url": "http://s.example.com/mcp", "transport": "streamable-http"}]);
    // Inline mode does not need the group and ignores the members.
    let d = desired(&vmcp(spec), &settings(), &Default::default(), &Found::default()).unwrap();
    assert!(d.role.rules.as_ref().unwrap().is_empty());
    assert_eq!(d.refused, None);
    assert_eq!(
        d.config["backends"],
        json!([{"name": "static", "url": "http://s.example.com/mcp", "transport": "streamable-http"}])
    );
    assert_eq!(d.config["outgoingAuth"], json!({"source": "inline"}));
    assert_eq!((d.backends.len(), d.backends[0].status, d.group_found), (1, "unknown", None));
}

#[test]
fn the_config_lists_every_member_kind_sorted_with_its_url_auth_headers_and_ca() {
    let d = desired(&vmcp(anonymous()), &settings(), &Default::default(), &found()).unwrap();
    assert_eq!(d.refused, None);
    let c = &d.config;
    assert_eq!((c["name"].as_str(), c["groupRef"].as_str()), (Some("team"), Some("eng")));
    let names: Vec<&str> = d.backends.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["broken", "fetch", "partner", "remote"], "sorted, members of eng only");
    let served: Vec<&str> = c["backends"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(served, ["fetch", "partner", "remote"], "the Failed entry is not served");
    let b = |n: &str| c["backends"].as_array().unwrap().iter().find(|b| b["name"] == n).unwrap().clone();
    assert_eq!(
        b("fetch"),
        json!({"name": "fetch", "url": "http://mcp-fetch-proxy.tools.svc.cluster.local:8080/mcp", "transport": "streamable-http"})
    );
    assert_eq!(
        b("remote"),
        json!({"name": "remote", "url": "http://mcp-remote-remote-proxy.tools.svc.cluster.local:9000/sse", "transport": "sse"})
    );
    let prefix = backends::env_prefix("partner");
    assert_eq!(
        b("partner"),
        json!({
            "name": "partner", "url": "https://mcp.partner.example.com/mcp", "transport": "streamable-http",
            "type": "entry", "allowPrivateEndpoint": true,
            "caBundlePath": "/etc/vmcp-ca/partner/ca.crt",
            "headers": {"X-Tenant-ID": "engineering"},
            "headersFromEnv": {"X-Secret": format!("{prefix}_HEADER_0")},
        })
    );
    assert_eq!(
        c["outgoingAuth"],
        json!({"source": "discovered", "backends": {"partner": {"type": "header_injection",
            "headerInjection": {"headerName": "X-API-Key", "headerValueEnv": format!("{prefix}_TOOLHIVE_HEADER_INJECTION_VALUE")}}}})
    );
    assert_eq!(c["incomingAuth"], json!({"type": "anonymous"}));

    // The pod reads both Secrets by reference and mounts the CA key read-only.
    let env = container(&d).env.as_ref().unwrap();
    for (var, secret, key) in [
        (format!("{prefix}_HEADER_0"), "s", "k"),
        (format!("{prefix}_TOOLHIVE_HEADER_INJECTION_VALUE"), "partner-key", "value"),
    ] {
        let e = env.iter().find(|e| e.name == var).unwrap_or_else(|| panic!("{var} in {env:?}"));
        let r = e.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((r.name.as_str(), r.key.as_str(), e.value.as_deref()), (secret, key, None));
    }
    let volume = pod(&d).volumes.as_ref().unwrap().iter().find(|v| v.name.starts_with("ca-")).unwrap();
    let cm = volume.config_map.as_ref().unwrap();
    assert_eq!((cm.name.as_str(), cm.items.as_ref().unwrap()[0].key.as_str()), ("partner-ca", "ca.crt"));
    let mount = container(&d).volume_mounts.as_ref().unwrap().iter().find(|m| m.name == volume.name).unwrap();
    assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/etc/vmcp-ca/partner", Some(true)));
    assert!(
        !d.config_map.data.as_ref().unwrap()["config.yaml"].contains("partner-key\n"),
        "no Secret name in the file"
    );

    let status: Vec<(&str, &str)> = d.backends.iter().map(|b| (b.name.as_str(), b.status)).collect();
    assert_eq!(
        status,
        [("broken", "unavailable"), ("fetch", "ready"), ("partner", "ready"), ("remote", "unavailable")]
    );
    let partner = d.backends.iter().find(|b| b.name == "partner").unwrap();
    assert_eq!(
        (partner.auth_type.as_str(), partner.auth_config_ref.as_deref()),
        ("header_injection", Some("partner-key"))
    );
    assert!(d.backends[0].message.as_deref().unwrap().contains("loopback"), "{:?}", d.backends[0].message);
}

#[test]
fn a_member_joining_or_leaving_rewrites_the_config_map_but_not_the_pod_template() {
    let mut f = found();
    f.entries.clear();
    let before = desired(&vmcp(anonymous()), &settings(), &Default::default(), &f).unwrap();
    f.servers.push(obj("MCPServer", "joiner", json!({"image": "img", "groupRef": "eng"}), json!({})));
    let after = desired(&vmcp(anonymous()), &settings(), &Default::default(), &f).unwrap();
    assert_ne!(before.config_map.data, after.config_map.data, "the new member is in the file");
    assert_ne!(before.config_map.metadata.annotations, after.config_map.metadata.annotations);
    assert_eq!(template_checksum_of(&before), template_checksum_of(&after));
    assert_eq!(before.deployment.spec.as_ref().unwrap().template, after.deployment.spec.as_ref().unwrap().template);
    assert_eq!(after.backends.iter().find(|b| b.name == "joiner").unwrap().status, "unknown");

    // A member bringing a Secret variable and a CA mount changes the template: a roll is needed.
    let with_entry = desired(&vmcp(anonymous()), &settings(), &Default::default(), &found()).unwrap();
    assert_eq!(template_checksum_of(&with_entry), template_checksum_of(&before), "the checksum still ignores members");
    assert_ne!(
        with_entry.deployment.spec.as_ref().unwrap().template,
        before.deployment.spec.as_ref().unwrap().template
    );

    // A spec change of the config does roll.
    let mut spec = anonymous();
    spec["config"]["aggregation"] =
        json!({"conflictResolution": "priority", "conflictResolutionConfig": {"priorityOrder": ["fetch"]}});
    let changed = desired(&vmcp(spec), &settings(), &Default::default(), &f).unwrap();
    assert_ne!(template_checksum_of(&changed), template_checksum_of(&after));
    assert_eq!(changed.config["aggregation"]["conflictResolution"], "priority");
}

#[test]
fn fields_whose_absence_opens_something_hold_the_vmcp_at_zero_and_harmless_ones_are_named() {
    for (field, value, path) in [
        ("authServerConfig", json!({"issuer": "https://as.example.com"}), "spec.authServerConfig"),
        ("rateLimiting", json!({"shared": {"requestsPerMinute": 10}}), "spec.config.rateLimiting"),
    ] {
        let mut spec = anonymous();
        if field == "rateLimiting" {
            spec["config"][field] = value;
        } else {
            spec[field] = value;
        }
        spec["replicas"] = json!(3);
        let d = desired(&vmcp(spec), &settings(), &Default::default(), &found()).unwrap();
        assert_eq!(d.unapplied.blocking, vec![path], "{field}");
        assert_eq!(d.deployment.spec.as_ref().unwrap().replicas, Some(0), "{field}");
    }
    let mut spec = anonymous();
    spec["config"]["compositeTools"] = json!([{"name": "deploy"}]);
    spec["config"]["optimizer"] = json!({"embeddingService": "http://e"});
    spec["config"]["codeMode"] = json!({"enabled": true});
    spec["embeddingServerRef"] = json!({"name": "emb"});
    let d = desired(&vmcp(spec), &settings(), &Default::default(), &found()).unwrap();
    assert!(!d.unapplied.blocks());
    assert_eq!(
        d.unapplied.ignored,
        ["spec.config.compositeTools", "spec.config.optimizer", "spec.config.codeMode", "spec.embeddingServerRef"]
    );
    assert_eq!(d.deployment.spec.as_ref().unwrap().replicas, None, "served anyway");
}

#[test]
fn what_cannot_be_resolved_is_refused_with_the_field_named() {
    // The group is missing.
    let mut f = found();
    f.group = None;
    let d = desired(&vmcp(anonymous()), &settings(), &Default::default(), &f).unwrap();
    assert_eq!(d.refused.as_deref(), Some("spec.config.groupRef: MCPGroup eng not found"));
    assert_eq!((d.group_found, d.deployment.spec.as_ref().unwrap().replicas), (Some(false), Some(0)));

    // Token exchange to a backend without an authenticated caller.
    let mut f = found();
    let exchange: MCPExternalAuthConfig = obj(
        "MCPExternalAuthConfig",
        "partner-key",
        json!({"type": "tokenExchange", "tokenExchange": {"tokenUrl": "https://sts.example.com/token", "clientId": "c",
            "clientSecretRef": {"name": "sts", "key": "secret"}, "audience": "partner"}}),
        json!({}),
    );
    f.auth_configs.insert("partner-key".into(), exchange.clone());
    let d = desired(&vmcp(anonymous()), &settings(), &Default::default(), &f).unwrap();
    let why = d.refused.unwrap();
    assert!(why.contains("backend partner") && why.contains("spec.incomingAuth.type oidc"), "{why}");
    assert_eq!(d.deployment.spec.as_ref().unwrap().replicas, Some(0));
    assert!(d.backends.is_empty() && d.config["backends"] == json!([]));

    // With OIDC incoming auth the same exchange is written, its secret by variable name.
    let mut spec = anonymous();
    spec["incomingAuth"] = json!({"type": "oidc", "oidcConfigRef": {"name": "keycloak", "audience": "vmcp"}});
    let policy = Referenced { oidc: Some(fixtures::oidc(fixtures::oidc_inline())), ..Default::default() };
    let d = desired(&vmcp(spec), &settings(), &policy, &f).unwrap();
    assert_eq!(d.refused, None);
    let te = &d.config["outgoingAuth"]["backends"]["partner"];
    assert_eq!(te["type"], "token_exchange");
    assert_eq!(te["tokenExchange"]["tokenUrl"], "https://sts.example.com/token");
    let var = te["tokenExchange"]["clientSecretEnv"].as_str().unwrap();
    assert!(container(&d).env.as_ref().unwrap().iter().any(|e| e.name == var && e.value_from.is_some()));

    // An auth type Apiary cannot carry out, chosen by spec.outgoingAuth for a server backend.
    let mut spec = anonymous();
    spec["outgoingAuth"] =
        json!({"backends": {"fetch": {"type": "externalAuthConfigRef", "externalAuthConfigRef": {"name": "sts-aws"}}}});
    let mut f = found();
    let aws: MCPExternalAuthConfig = obj(
        "MCPExternalAuthConfig",
        "sts-aws",
        json!({"type": "awsSts", "awsSts": {"region": "eu-west-1"}}),
        json!({}),
    );
    f.auth_configs.insert("sts-aws".into(), aws);
    let d = desired(&vmcp(spec), &settings(), &Default::default(), &f).unwrap();
    let why = d.refused.unwrap();
    assert!(why.starts_with("backend fetch: spec.outgoingAuth: MCPExternalAuthConfig sts-aws: type awsSts"), "{why}");

    // A member's own reference to a config that is gone: that member is left out, named; the
    // others are served.
    let mut f = found();
    f.auth_configs.clear();
    let d = desired(&vmcp(anonymous()), &settings(), &Default::default(), &f).unwrap();
    assert_eq!(d.refused, None);
    let partner = d.backends.iter().find(|b| b.name == "partner").unwrap();
    assert_eq!((partner.served, partner.status), (false, "unavailable"));
    assert_eq!(
        partner.message.as_deref(),
        Some("not served: MCPServerEntry spec.externalAuthConfigRef: MCPExternalAuthConfig partner-key not found")
    );
    let served: Vec<&str> =
        d.config["backends"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(served, ["fetch", "remote"]);
    assert!(!container(&d).env.as_ref().unwrap().iter().any(|e| e.name.starts_with("VMCP_PARTNER")), "nor its Secrets");

    // A missing MCPOIDCConfig names the vMCP's own field.
    let mut spec = anonymous();
    spec["incomingAuth"] = json!({"type": "oidc", "oidcConfigRef": {"name": "keycloak", "audience": "vmcp"}});
    let d = desired(&vmcp(spec), &settings(), &Default::default(), &found()).unwrap();
    assert_eq!(d.refused.as_deref(), Some("spec.incomingAuth.oidcConfigRef: MCPOIDCConfig keycloak not found"));

    // No group at all, or OIDC settings with anonymous auth: invalid specs.
    let no_group = vmcp(json!({"incomingAuth": {"type": "anonymous"}}));
    assert!(matches!(desired(&no_group, &settings(), &Default::default(), &found()), Err(DesiredError::NoGroup)));
    let mut spec = anonymous();
    spec["incomingAuth"]["oidcConfigRef"] = json!({"name": "keycloak", "audience": "vmcp"});
    assert!(matches!(
        desired(&vmcp(spec), &settings(), &Default::default(), &found()),
        Err(DesiredError::AnonymousWithOidc)
    ));
}

/// What the operator writes for a token-exchange backend is what `apiary vmcp` loads: the
/// ConfigMap parses and validates with the vMCP's own parser, the exchange is that backend's,
/// and its client secret reaches the pod as the Secret-backed variable the file names.
#[test]
fn a_token_exchange_backend_is_written_so_that_the_vmcp_loads_it() {
    let mut f = found();
    let exchange: MCPExternalAuthConfig = obj(
        "MCPExternalAuthConfig",
        "partner-key",
        json!({"type": "tokenExchange", "tokenExchange": {"tokenUrl": "https://sts.example.com/token", "clientId": "gw",
            "clientSecretRef": {"name": "sts", "key": "secret"}, "audience": "partner", "scopes": ["openid"]}}),
        json!({}),
    );
    f.auth_configs.insert("partner-key".into(), exchange);
    let mut spec = anonymous();
    spec["incomingAuth"] = json!({"type": "oidc", "oidcConfigRef": {"name": "keycloak", "audience": "vmcp"}});
    let policy = Referenced { oidc: Some(fixtures::oidc(fixtures::oidc_inline())), ..Default::default() };
    let d = desired(&vmcp(spec), &settings(), &policy, &f).unwrap();
    assert_eq!(d.refused, None);
    assert_ne!(d.deployment.spec.as_ref().unwrap().replicas, Some(0), "not held at zero");

    let text = &d.config_map.data.as_ref().unwrap()[CONFIG_KEY];
    let file = apiary_vmcp::VmcpConfig::parse(text).unwrap();
    file.validate().unwrap();
    let (path, te) = file.token_exchange_for("partner").unwrap();
    assert_eq!(path, "outgoingAuth.backends.partner.tokenExchange");
    assert!(file.token_exchange_for("fetch").is_none(), "only the entry that references it exchanges");
    let p = te.to_policy().unwrap();
    assert_eq!((p.token_url.as_str(), p.client_id.as_str()), ("https://sts.example.com/token", "gw"));
    assert_eq!((p.audience.as_deref(), p.scopes.as_slice()), (Some("partner"), &["openid".to_string()][..]));
    assert_eq!(p.client_secret, None, "the secret is never in the ConfigMap");
    let var = p.client_secret_env.unwrap();
    let env = container(&d).env.as_ref().unwrap().iter().find(|e| e.name == var).unwrap();
    let from = env.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
    assert_eq!((from.name.as_str(), from.key.as_str()), ("sts", "secret"));
    assert!(!text.contains("secret\""), "{text}");

    // The same file without incoming OIDC would be refused by the vMCP too.
    let anonymous_file = text.replace("type: oidc", "type: anonymous");
    let err = apiary_vmcp::VmcpConfig::parse(&anonymous_file).map(|c| c.validate());
    assert!(!matches!(err, Ok(Ok(_))), "a token exchange without authenticated callers loaded");
}

#[test]
fn incoming_oidc_and_cedar_are_written_in_toolhives_vmcp_shape() {
    let mut spec = anonymous();
    spec["incomingAuth"] = json!({
        "type": "oidc", "oidcConfigRef": {"name": "keycloak", "audience": "vmcp", "resourceUrl": "https://vmcp.example.com/mcp"},
        "authzConfig": {"type": "inline", "inline": {"policies": ["permit(principal, action, resource);"]}},
    });
    let policy = Referenced { oidc: Some(fixtures::oidc(fixtures::oidc_inline())), ..Default::default() };
    // `spec.groupRef` (ToolHive's newer place) works too.
    spec["config"] = json!({});
    spec["groupRef"] = json!({"name": "eng"});
    let d = desired(&vmcp(spec), &settings(), &policy, &found()).unwrap();
    assert_eq!(d.refused, None);
    assert_eq!(d.config["groupRef"], "eng");
    assert_eq!(
        d.config["incomingAuth"],
        json!({
            "type": "oidc",
            "oidc": {"issuer": "https://keycloak.example.com/realms/mcp", "audience": "vmcp", "clientId": "apiary",
                "clientSecretEnv": "TOOLHIVE_OIDC_CLIENT_SECRET", "resource": "https://vmcp.example.com/mcp",
                "insecureAllowHttp": false},
            "authz": {"type": "cedar", "policies": ["permit(principal, action, resource);"], "entitiesJson": "[]"},
        })
    );
    let env = container(&d).env.as_ref().unwrap();
    let secret = env.iter().find(|e| e.name == "TOOLHIVE_OIDC_CLIENT_SECRET").unwrap();
    assert_eq!(secret.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap().name, "keycloak-client");
    assert!(d.hashes.oidc.is_some() && d.hashes.authz.is_some());
}

#[test]
fn the_oidc_providers_ca_bundle_is_trusted_beside_the_images_roots() {
    let mut spec = anonymous();
    spec["incomingAuth"] = json!({"type": "oidc", "oidcConfigRef": {"name": "keycloak", "audience": "vmcp"}});
    let mut inline = fixtures::oidc_inline();
    let without = Referenced { oidc: Some(fixtures::oidc(inline.clone())), ..Default::default() };
    inline["caBundleRef"] = json!({"configMapRef": {"name": "idp-ca", "key": "ca.pem"}});
    let with = Referenced { oidc: Some(fixtures::oidc(inline)), ..Default::default() };

    let plain = desired(&vmcp(spec.clone()), &settings(), &without, &found()).unwrap();
    assert!(container(&plain).env.iter().flatten().all(|e| e.name != "SSL_CERT_DIR"));

    let d = desired(&vmcp(spec), &settings(), &with, &found()).unwrap();
    let env = container(&d).env.as_ref().unwrap();
    let dirs = env.iter().find(|e| e.name == "SSL_CERT_DIR").unwrap().value.clone().unwrap();
    assert_eq!(dirs, "/etc/ssl/certs:/etc/vmcp-oidc-ca", "the image's roots stay trusted");
    let mount = container(&d).volume_mounts.iter().flatten().find(|m| m.mount_path == "/etc/vmcp-oidc-ca").unwrap();
    assert_eq!(mount.read_only, Some(true));
    let volume = pod(&d).volumes.iter().flatten().find(|v| v.name == mount.name).unwrap();
    let cm = volume.config_map.as_ref().unwrap();
    assert_eq!(cm.name, "idp-ca");
    assert_eq!(cm.items.as_ref().unwrap()[0].key, "ca.pem");
    assert_eq!(cm.optional, Some(false), "a missing CA keeps the pod from starting, never trusts less");
    // The entry `partner`'s own CA volume is still there, under another name.
    let names: Vec<&str> = pod(&d).volumes.iter().flatten().map(|v| v.name.as_str()).collect();
    assert_eq!(names.iter().filter(|n| n.starts_with("ca-")).count(), 2, "{names:?}");
}
