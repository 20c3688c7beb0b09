//! Tests of the MCPRemoteProxy desired-state builders: names, labels, owner references, ports,
//! the RunConfig and its checksum, the runner's exact RBAC, and the unapplied-field rules.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::crd::common::SessionAffinity;
use crate::crd::common::{AuditConfig, GroupRef, ResourceRequirements as SpecResources};
use crate::reconcile::labels::{CHECKSUM_ANNOTATION, RUNCONFIG_KEY, proxy_selector};

fn settings() -> Settings {
    Settings { runner_image: "registry.example/apiary:1".into(), proxy_host: "0.0.0.0".into(), vmcp_image: None }
}

fn proxy(spec: MCPRemoteProxySpec) -> MCPRemoteProxy {
    let mut p = MCPRemoteProxy::new("remote", spec);
    p.metadata.namespace = Some("toolhive-system".into());
    p.metadata.uid = Some("uid-7".into());
    p
}

fn spec() -> MCPRemoteProxySpec {
    MCPRemoteProxySpec { remote_url: Some("https://mcp.example.com/mcp".into()), ..Default::default() }
}

fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

fn runconfig(d: &Desired) -> RunConfig {
    RunConfig::from_json_str(&d.config_map.data.as_ref().unwrap()[RUNCONFIG_KEY]).unwrap()
}

#[test]
fn children_have_the_contract_names_labels_and_owner() {
    let d = desired(&proxy(spec()), &settings(), &Referenced::default()).unwrap();
    let metas: Vec<(&str, &ObjectMeta, &str)> = vec![
        ("remote-runconfig", &d.config_map.metadata, "mcpremoteproxy"),
        ("remote", &d.deployment.metadata, "toolhive-proxy"),
        ("mcp-remote-remote-proxy", &d.service.metadata, "toolhive-proxy"),
        ("remote-remote-proxy-runner", &d.runner_account.metadata, "mcpremoteproxy"),
        ("remote-remote-proxy-runner", &d.runner_role.metadata, "mcpremoteproxy"),
        ("remote-remote-proxy-runner", &d.runner_binding.metadata, "mcpremoteproxy"),
    ];
    for (name, meta, app_name) in metas {
        assert_eq!(meta.name.as_deref(), Some(name));
        assert_eq!(meta.namespace.as_deref(), Some("toolhive-system"));
        let owners = meta.owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1, "{name}");
        assert_eq!(
            (owners[0].uid.as_str(), owners[0].kind.as_str(), owners[0].api_version.as_str()),
            ("uid-7", "MCPRemoteProxy", "toolhive.stacklok.dev/v1beta1")
        );
        assert_eq!((owners[0].controller, owners[0].block_owner_deletion), (Some(true), Some(true)));
        assert_eq!(label(meta, "app.kubernetes.io/name"), Some(app_name), "{name}");
        assert_eq!(label(meta, "app.kubernetes.io/instance"), Some("remote"));
        assert_eq!(label(meta, "app"), Some("mcpremoteproxy"));
        assert_eq!(label(meta, "toolhive"), Some("true"));
        assert_eq!(label(meta, "toolhive-name"), Some("remote"));
    }
    assert_eq!(d.proxy_port, 8080);
    assert!(d.unapplied.is_empty());
}

#[test]
fn deployment_runs_the_runner_on_the_runconfig_with_the_checksum_on_its_pods() {
    let d = desired(&proxy(spec()), &settings(), &Referenced::default()).unwrap();
    let spec = d.deployment.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, None, "unset replicas are left to an autoscaler");
    assert_eq!(spec.selector.match_labels.as_ref().unwrap(), &proxy_selector("remote"));
    let template = spec.template.metadata.as_ref().unwrap();
    assert_eq!(label(template, "app.kubernetes.io/name"), Some("toolhive-proxy"));
    assert_eq!(label(template, "app.kubernetes.io/instance"), Some("remote"));
    assert_eq!(template.annotations.as_ref().unwrap()[CHECKSUM_ANNOTATION], d.checksum);
    assert_eq!(d.config_map.metadata.annotations.as_ref().unwrap()[CHECKSUM_ANNOTATION], d.checksum);
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("remote-remote-proxy-runner"));
    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    assert_eq!(c.name, "toolhive");
    assert_eq!(c.image.as_deref(), Some("registry.example/apiary:1"));
    assert_eq!(
        c.args.as_deref().unwrap(),
        ["proxyrunner", "run", "--config", "/etc/runconfig/runconfig.json"].map(String::from)
    );
    let port = &c.ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.container_port), (Some("http"), 8080));
    let probe = c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
    assert_eq!((probe.path.as_deref(), &probe.port), (Some("/health"), &IntOrString::String("http".into())));
    let mount = &c.volume_mounts.as_ref().unwrap()[0];
    assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/etc/runconfig", Some(true)));
    let volume = &pod.volumes.as_ref().unwrap()[0];
    assert_eq!(volume.config_map.as_ref().unwrap().name, "remote-runconfig");
    assert_eq!(volume.name, mount.name);
}

#[test]
fn service_and_container_follow_proxy_port_and_affinity() {
    let mut s = spec();
    s.proxy_port = Some(9191);
    s.session_affinity = Some(SessionAffinity::None);
    s.replicas = Some(2);
    let d = desired(&proxy(s), &settings(), &Referenced::default()).unwrap();
    let svc = d.service.spec.as_ref().unwrap();
    let p = &svc.ports.as_ref().unwrap()[0];
    assert_eq!((p.name.as_deref(), p.port), (Some("http"), 9191));
    assert_eq!(p.target_port, Some(IntOrString::String("http".into())));
    assert_eq!(svc.session_affinity.as_deref(), Some("None"));
    assert_eq!(svc.selector.as_ref().unwrap(), &proxy_selector("remote"));
    let dep = d.deployment.spec.as_ref().unwrap();
    assert_eq!(dep.replicas, Some(2));
    assert_eq!(dep.template.spec.as_ref().unwrap().containers[0].ports.as_ref().unwrap()[0].container_port, 9191);
    assert_eq!(runconfig(&d).proxy.port, 9191);
    assert_eq!(d.proxy_port, 9191);
    // The default affinity is ClientIP.
    let d = desired(&proxy(spec()), &settings(), &Referenced::default()).unwrap();
    assert_eq!(d.service.spec.unwrap().session_affinity.as_deref(), Some("ClientIP"));
}

#[test]
fn runconfig_holds_the_remote_url_transport_and_listener() {
    let mut s = spec();
    s.endpoint_prefix = Some("/remote".into());
    s.trust_proxy_headers = Some(true);
    s.group_ref = Some(GroupRef::from_name("team"));
    let d = desired(&proxy(s), &settings(), &Referenced::default()).unwrap();
    let rc = runconfig(&d);
    assert_eq!(rc.name, "remote");
    assert_eq!(rc.source, Source::remote("https://mcp.example.com/mcp"));
    assert_eq!(rc.transport, Some(Transport::StreamableHttp));
    assert_eq!(rc.proxy.proxy_mode, ProxyMode::StreamableHttp);
    assert_eq!((rc.proxy.host.as_str(), rc.proxy.port), ("0.0.0.0", 8080));
    assert_eq!(rc.proxy.endpoint_prefix, "/remote");
    assert!(rc.proxy.trust_proxy_headers);
    assert_eq!(rc.group, "team");
    assert_eq!(d.checksum, sha256_hex(d.config_map.data.as_ref().unwrap()[RUNCONFIG_KEY].as_bytes()));

    let mut sse = spec();
    sse.transport = Some(RemoteTransport::Sse);
    sse.remote_url = None;
    sse.remote_url_alias = Some("https://sse.example.com/sse".into());
    let rc = runconfig(&desired(&proxy(sse), &settings(), &Referenced::default()).unwrap());
    assert_eq!(rc.source, Source::remote("https://sse.example.com/sse"), "remoteUrl is accepted");
    assert_eq!((rc.transport, rc.proxy.proxy_mode), (Some(Transport::Sse), ProxyMode::Sse));
}

#[test]
fn the_checksum_changes_only_when_the_runconfig_does() {
    let base = desired(&proxy(spec()), &settings(), &Referenced::default()).unwrap();
    assert_eq!(base.checksum.len(), 64);
    assert_eq!(
        desired(&proxy(spec()), &settings(), &Referenced::default()).unwrap().checksum,
        base.checksum,
        "same spec, same checksum"
    );

    // Fields that are not in the RunConfig leave it alone (no rollout for them).
    let mut s = spec();
    s.replicas = Some(3);
    s.session_affinity = Some(SessionAffinity::None);
    s.resources = Some(SpecResources { limits: None, requests: None });
    s.audit = Some(AuditConfig::default());
    assert_eq!(desired(&proxy(s), &settings(), &Referenced::default()).unwrap().checksum, base.checksum);

    // Fields in it change it.
    for change in [
        |s: &mut MCPRemoteProxySpec| s.remote_url = Some("https://other.example.com/mcp".into()),
        |s: &mut MCPRemoteProxySpec| s.proxy_port = Some(9000),
        |s: &mut MCPRemoteProxySpec| s.transport = Some(RemoteTransport::Sse),
        |s: &mut MCPRemoteProxySpec| s.endpoint_prefix = Some("/p".into()),
    ] {
        let mut s = spec();
        change(&mut s);
        assert_ne!(desired(&proxy(s), &settings(), &Referenced::default()).unwrap().checksum, base.checksum);
    }
}

/// (apiGroups, resources, verbs, narrowed by name or URL) of one policy rule.
type Rule = (Vec<String>, Vec<String>, Vec<String>, bool);

#[test]
fn runner_role_reads_configmaps_and_secrets_only() {
    let d = desired(&proxy(spec()), &settings(), &Referenced::default()).unwrap();
    let rules: Vec<Rule> = d
        .runner_role
        .rules
        .unwrap()
        .into_iter()
        .map(|r| {
            let narrowed = r.resource_names.is_some() || r.non_resource_urls.is_some();
            (r.api_groups.unwrap(), r.resources.unwrap(), r.verbs, narrowed)
        })
        .collect();
    let s = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(rules, vec![(s(&[""]), s(&["configmaps", "secrets"]), s(&["get", "list", "watch"]), false)]);
    let binding = d.runner_binding;
    assert_eq!(
        (binding.role_ref.api_group.as_str(), binding.role_ref.kind.as_str(), binding.role_ref.name.as_str()),
        ("rbac.authorization.k8s.io", "Role", "remote-remote-proxy-runner")
    );
    let subjects = binding.subjects.unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(
        (subjects[0].kind.as_str(), subjects[0].name.as_str(), subjects[0].namespace.as_deref()),
        ("ServiceAccount", "remote-remote-proxy-runner", Some("toolhive-system"))
    );
}

#[test]
fn a_named_service_account_and_resources_reach_the_pod() {
    let mut s = spec();
    s.service_account = Some("mine".into());
    s.resources = Some(SpecResources {
        limits: Some(ResourceList { cpu: Some("500m".into()), memory: None }),
        requests: Some(ResourceList { cpu: None, memory: Some("64Mi".into()) }),
    });
    let d = desired(&proxy(s), &settings(), &Referenced::default()).unwrap();
    let pod = d.deployment.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("mine"));
    let r = pod.containers[0].resources.clone().unwrap();
    assert_eq!(r.limits.unwrap(), BTreeMap::from([("cpu".to_string(), Quantity("500m".into()))]));
    assert_eq!(r.requests.unwrap(), BTreeMap::from([("memory".to_string(), Quantity("64Mi".into()))]));
}

#[test]
fn unapplied_fields_are_listed_and_restrictive_ones_keep_the_proxy_at_zero() {
    let mut s = spec();
    s.audit = Some(AuditConfig { enabled: Some(false) });
    assert!(
        desired(&proxy(s.clone()), &settings(), &Referenced::default()).unwrap().unapplied.is_empty(),
        "audit off asks for nothing"
    );
    s.header_forward = Some(Default::default());
    s.replicas = Some(2);
    let d = desired(&proxy(s.clone()), &settings(), &Referenced::default()).unwrap();
    assert_eq!(d.unapplied.blocking, Vec::<&str>::new());
    assert_eq!(d.unapplied.ignored, vec!["spec.headerForward"]);
    assert_eq!(d.deployment.spec.as_ref().unwrap().replicas, Some(2), "ignored fields do not stop the proxy");

    s.audit = Some(AuditConfig { enabled: Some(true) });
    s.auth_server_ref = Some(serde_json::from_value(serde_json::json!({"name": "embedded"})).unwrap());
    let d = desired(&proxy(s), &settings(), &Referenced::default()).unwrap();
    assert_eq!(d.unapplied.blocking, vec!["spec.authServerRef"]);
    assert_eq!(d.unapplied.ignored, vec!["spec.headerForward"]);
    assert_eq!(d.deployment.spec.as_ref().unwrap().replicas, Some(0), "no proxy without its restrictions");
}

#[test]
fn each_unenforced_protection_alone_holds_the_proxy_at_zero() {
    let mut base = spec();
    base.replicas = Some(2);
    let base_json = serde_json::to_value(&base).unwrap();
    for (field, value) in crate::reconcile::features::blocking_examples() {
        if ["webhookConfigRef", "rateLimiting"].contains(&field) {
            continue; // not MCPRemoteProxy fields
        }
        let mut with = base_json.clone();
        with[field] = value;
        let d = desired(&proxy(serde_json::from_value(with).unwrap()), &settings(), &Referenced::default()).unwrap();
        assert_eq!(d.unapplied.blocking, vec![format!("spec.{field}")], "{field}");
        assert_eq!(d.deployment.spec.as_ref().unwrap().replicas, Some(0), "{field}");
    }
    assert_eq!(
        desired(&proxy(base), &settings(), &Referenced::default()).unwrap().deployment.spec.unwrap().replicas,
        Some(2)
    );
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let mut no_uid = proxy(spec());
    no_uid.metadata.uid = None;
    assert!(matches!(desired(&no_uid, &settings(), &Referenced::default()), Err(DesiredError::MissingMeta(_))));
    assert!(matches!(
        desired(&proxy(MCPRemoteProxySpec::default()), &settings(), &Referenced::default()),
        Err(DesiredError::NoRemoteUrl)
    ));
    let mut s = spec();
    s.proxy_port = Some(70000);
    assert!(matches!(desired(&proxy(s), &settings(), &Referenced::default()), Err(DesiredError::BadPort(70000))));
    let mut s = spec();
    s.remote_url = Some("ftp://x/mcp".into());
    let e = desired(&proxy(s), &settings(), &Referenced::default()).unwrap_err();
    assert!(matches!(e, DesiredError::RunConfig(_)), "{e}");
}

#[test]
fn enforced_protections_reach_the_remote_runconfig_and_missing_ones_hold_it_at_zero() {
    use crate::reconcile::policy::{CLIENT_SECRET_ENV, fixtures};
    let mut with = serde_json::to_value(spec()).unwrap();
    for (k, v) in fixtures::spec_fields().as_object().unwrap() {
        with[k] = v.clone();
    }
    let s: MCPRemoteProxySpec = serde_json::from_value(with).unwrap();
    let d = desired(&proxy(s.clone()), &settings(), &fixtures::found()).unwrap();
    assert!(d.refused.is_none() && d.unapplied.is_empty());
    assert_ne!(d.deployment.spec.as_ref().unwrap().replicas, Some(0));
    let rc = runconfig(&d);
    assert_eq!(rc.policy.oidc.unwrap().client_secret_env.as_deref(), Some(CLIENT_SECRET_ENV));
    assert!(rc.policy.authz.is_some() && rc.policy.audit.is_some() && !rc.policy.tools.is_empty());
    let pod = d.deployment.spec.unwrap().template.spec.unwrap();
    assert!(pod.containers[0].env.iter().flatten().any(|e| e.name == CLIENT_SECRET_ENV && e.value.is_none()));

    let d = desired(&proxy(s), &settings(), &Referenced::default()).unwrap();
    assert_eq!(d.refused.unwrap().to_string(), "spec.oidcConfigRef: MCPOIDCConfig keycloak not found");
    assert_eq!(d.deployment.spec.unwrap().replicas, Some(0));
}

#[test]
fn outgoing_credentials_and_telemetry_reach_the_remote_runconfig_and_service() {
    use crate::reconcile::policy::{fixtures, outgoing::BEARER_TOKEN_ENV};
    let mut with = serde_json::to_value(spec()).unwrap();
    with["externalAuthConfigRef"] = serde_json::json!({"name": "upstream"});
    with["telemetryConfigRef"] = serde_json::json!({"name": "otel", "serviceName": "remote-mcp"});
    let s: MCPRemoteProxySpec = serde_json::from_value(with).unwrap();
    let found = Referenced {
        external_auth: Some(fixtures::external_auth(serde_json::json!({"type": "bearerToken",
            "bearerToken": {"tokenSecretRef": {"name": "pat", "key": "token"}}}))),
        telemetry: Some(fixtures::telemetry(serde_json::json!({"prometheus": {"enabled": true}}))),
        ..Default::default()
    };
    let d = desired(&proxy(s.clone()), &settings(), &found).unwrap();
    assert!(d.refused.is_none() && d.unapplied.is_empty(), "{:?} {:?}", d.refused, d.unapplied);
    let rc = runconfig(&d);
    assert_eq!(rc.policy.outgoing.bearer_token_env.as_deref(), Some(BEARER_TOKEN_ENV));
    assert_eq!(rc.telemetry.service_name.as_deref(), Some("remote-mcp"));
    assert!(rc.telemetry.prometheus_metrics_path && rc.telemetry.endpoint.is_none());
    let pod = d.deployment.spec.as_ref().unwrap().template.spec.clone().unwrap();
    assert!(pod.containers[0].env.iter().flatten().any(|e| e.name == BEARER_TOKEN_ENV && e.value.is_none()));
    let ports = d.service.spec.as_ref().unwrap().ports.clone().unwrap();
    assert_eq!(ports.iter().map(|p| p.port).collect::<Vec<_>>(), [8080, 9464]);
    assert!(d.hashes.external_auth.is_some() && d.hashes.telemetry.is_some());

    let d = desired(&proxy(s), &settings(), &Referenced::default()).unwrap();
    assert_eq!(d.refused.unwrap().to_string(), "spec.externalAuthConfigRef: MCPExternalAuthConfig upstream not found");
    assert_eq!(d.deployment.spec.unwrap().replicas, Some(0));
}
