//! Tests of the desired-state builders: names, labels, owner references, the RunConfig and its
//! checksum, and the proxy runner's exact RBAC rules.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::crd::common::EnvVar as SpecEnvVar;
use crate::reconcile::labels::{CHECKSUM_ANNOTATION, proxy_selector};

fn settings() -> Settings {
    Settings {
        runner_image: "registry.example/apiary:1".into(),
        proxy_host: DEFAULT_PROXY_HOST.into(),
        vmcp_image: None,
    }
}

fn fetch(spec: MCPServerSpec) -> MCPServer {
    let mut s = MCPServer::new("fetch", spec);
    s.metadata.namespace = Some("toolhive-system".into());
    s.metadata.uid = Some("uid-1".into());
    s
}

fn seed_spec() -> MCPServerSpec {
    MCPServerSpec {
        image: "ghcr.io/stackloklabs/gofetch/server:latest".into(),
        transport: Some(ServerTransport::StreamableHttp),
        mcp_port: Some(8080),
        proxy_port: Some(8080),
        ..Default::default()
    }
}

fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

#[test]
fn children_have_the_contract_names_labels_and_owner() {
    let d = desired(&fetch(seed_spec()), &settings(), &Referenced::default()).unwrap();
    let metas: Vec<(&str, &ObjectMeta)> = vec![
        ("fetch-runconfig", &d.config_map.metadata),
        ("fetch", &d.deployment.metadata),
        ("mcp-fetch-proxy", &d.proxy_service.metadata),
        ("fetch", &d.alias_service.metadata),
        ("fetch-proxy-runner", &d.runner_account.metadata),
        ("fetch-proxy-runner", &d.runner_role.metadata),
        ("fetch-proxy-runner", &d.runner_binding.metadata),
        ("fetch-sa", &d.mcp_account.as_ref().unwrap().metadata),
    ];
    for (name, meta) in metas {
        assert_eq!(meta.name.as_deref(), Some(name));
        assert_eq!(meta.namespace.as_deref(), Some("toolhive-system"));
        let owners = meta.owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1, "{name}");
        assert_eq!((owners[0].uid.as_str(), owners[0].kind.as_str()), ("uid-1", "MCPServer"));
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(label(meta, "app.kubernetes.io/instance"), Some("fetch"));
        assert_eq!(label(meta, "toolhive"), Some("true"));
        assert_eq!(label(meta, "toolhive-name"), Some("fetch"));
        assert_eq!(label(meta, "app"), Some("mcpserver"));
    }
    for meta in [&d.deployment.metadata, &d.proxy_service.metadata, &d.alias_service.metadata] {
        assert_eq!(label(meta, "app.kubernetes.io/name"), Some("toolhive-proxy"));
    }
    for meta in [&d.config_map.metadata, &d.runner_role.metadata] {
        assert_eq!(label(meta, "app.kubernetes.io/name"), Some("mcpserver"));
    }
    assert_eq!(d.proxy_port, 8080);
}

#[test]
fn deployment_runs_the_proxy_runner_with_the_checksum_on_its_pods() {
    let d = desired(&fetch(seed_spec()), &settings(), &Referenced::default()).unwrap();
    let spec = d.deployment.spec.as_ref().unwrap();
    let template_meta = spec.template.metadata.as_ref().unwrap();
    assert_eq!(template_meta.annotations.as_ref().unwrap()[CHECKSUM_ANNOTATION], d.checksum);
    assert_eq!(d.config_map.metadata.annotations.as_ref().unwrap()[CHECKSUM_ANNOTATION], d.checksum);
    assert_eq!(label(template_meta, "app.kubernetes.io/name"), Some("toolhive-proxy"));
    assert_eq!(spec.selector.match_labels.as_ref().unwrap(), &proxy_selector("fetch"));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("fetch-proxy-runner"));
    let c = &pod.containers[0];
    assert_eq!(c.name, "toolhive");
    assert_eq!(c.image.as_deref(), Some("registry.example/apiary:1"));
    assert_eq!(c.args.as_ref().unwrap()[0], "proxyrunner");
    let port = &c.ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.container_port), (Some("http"), 8080));
    assert_eq!(spec.replicas, None, "unset replicas are left to an autoscaler");
    // The runner owns the StatefulSet: an old and a new runner must never both apply it.
    assert_eq!(spec.strategy.as_ref().and_then(|s| s.type_.as_deref()), Some("Recreate"));
}

#[test]
fn services_carry_proxy_port_and_affinity() {
    let mut spec = seed_spec();
    spec.proxy_port = None;
    spec.port = Some(9090);
    let d = desired(&fetch(spec), &settings(), &Referenced::default()).unwrap();
    for svc in [&d.proxy_service, &d.alias_service] {
        let s = svc.spec.as_ref().unwrap();
        let p = &s.ports.as_ref().unwrap()[0];
        assert_eq!((p.name.as_deref(), p.port), (Some("http"), 9090));
        assert_eq!(p.target_port, Some(IntOrString::String("http".into())));
        assert_eq!(s.session_affinity.as_deref(), Some("ClientIP"));
        assert_eq!(s.selector.as_ref().unwrap(), &proxy_selector("fetch"));
    }
    assert_eq!(
        d.deployment.spec.unwrap().template.spec.unwrap().containers[0].ports.as_ref().unwrap()[0].container_port,
        9090
    );
}

#[test]
fn runconfig_reflects_the_spec_and_the_checksum_follows_it() {
    let mut spec = seed_spec();
    spec.args = Some(vec!["--verbose".into()]);
    spec.env = Some(vec![SpecEnvVar { name: "LOG".into(), value: "debug".into() }]);
    let d1 = desired(&fetch(spec.clone()), &settings(), &Referenced::default()).unwrap();
    let text = &d1.config_map.data.as_ref().unwrap()[crate::reconcile::labels::RUNCONFIG_KEY];
    let rc = RunConfig::from_json_str(text).unwrap();
    assert_eq!(rc.name, "fetch");
    assert_eq!(rc.source, Source::image("ghcr.io/stackloklabs/gofetch/server:latest"));
    assert_eq!(rc.transport, Some(Transport::StreamableHttp));
    assert_eq!((rc.proxy.port, rc.target_port), (8080, 8080));
    assert_eq!(rc.proxy.host, "0.0.0.0");
    assert_eq!(rc.args, vec!["--verbose".to_string()]);
    assert_eq!(rc.env.get("LOG").map(String::as_str), Some("debug"));
    assert_eq!(d1.checksum, sha256_hex(text.as_bytes()));
    assert_eq!(d1.checksum.len(), 64);

    let again = desired(&fetch(spec.clone()), &settings(), &Referenced::default()).unwrap();
    assert_eq!(again.checksum, d1.checksum, "same spec, same checksum");
    spec.args = Some(vec!["--quiet".into()]);
    let d2 = desired(&fetch(spec), &settings(), &Referenced::default()).unwrap();
    assert_ne!(d2.checksum, d1.checksum);
}

#[test]
fn stdio_caps_replicas_and_a_named_account_replaces_the_sa() {
    let mut spec = seed_spec();
    spec.transport = None;
    spec.replicas = Some(3);
    spec.service_account = Some("mine".into());
    let d = desired(&fetch(spec), &settings(), &Referenced::default()).unwrap();
    assert_eq!(d.deployment.spec.as_ref().unwrap().replicas, Some(1));
    assert!(d.mcp_account.is_none());
    let rc = RunConfig::from_json_str(&d.config_map.data.as_ref().unwrap()["runconfig.json"]).unwrap();
    assert_eq!(rc.transport, Some(Transport::Stdio));
}

#[test]
fn runner_role_has_exactly_the_listed_rules() {
    let d = desired(&fetch(seed_spec()), &settings(), &Referenced::default()).unwrap();
    let rules: Vec<(String, String, Vec<String>)> = d
        .runner_role
        .rules
        .unwrap()
        .into_iter()
        .map(|r| (r.api_groups.unwrap().join(","), r.resources.unwrap().join(","), r.verbs))
        .collect();
    let crud: Vec<String> =
        ["get", "list", "watch", "create", "update", "patch", "delete"].iter().map(|s| s.to_string()).collect();
    let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        rules,
        vec![
            ("apps".into(), "statefulsets".into(), crud.clone()),
            ("".into(), "services".into(), crud),
            ("".into(), "pods".into(), v(&["get", "list", "watch"])),
            ("".into(), "pods/log".into(), v(&["get"])),
            ("".into(), "pods/attach".into(), v(&["create", "get"])),
            ("".into(), "configmaps".into(), v(&["get", "list", "watch"])),
        ]
    );
    let binding = d.runner_binding;
    assert_eq!(binding.role_ref.name, "fetch-proxy-runner");
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!((subject.kind.as_str(), subject.name.as_str()), ("ServiceAccount", "fetch-proxy-runner"));
}

#[test]
fn missing_uid_is_an_error_not_a_panic() {
    let mut s = fetch(seed_spec());
    s.metadata.uid = None;
    assert!(matches!(desired(&s, &settings(), &Referenced::default()), Err(DesiredError::MissingMeta(_))));
}

#[test]
fn each_unenforced_protection_holds_the_proxy_at_zero_and_removing_it_restores_replicas() {
    let mut base = seed_spec();
    base.replicas = Some(2);
    let open = desired(&fetch(base.clone()), &settings(), &Referenced::default()).unwrap();
    assert!(open.unapplied.is_empty());
    assert_eq!(open.deployment.spec.as_ref().unwrap().replicas, Some(2));
    let base_json = serde_json::to_value(&base).unwrap();
    for (field, value) in crate::reconcile::features::blocking_examples() {
        let mut with = base_json.clone();
        with[field] = value;
        let spec: MCPServerSpec = serde_json::from_value(with).unwrap();
        let d = desired(&fetch(spec), &settings(), &Referenced::default()).unwrap();
        assert_eq!(d.unapplied.blocking, vec![format!("spec.{field}")], "{field}");
        assert_eq!(d.deployment.spec.as_ref().unwrap().replicas, Some(0), "{field}: nothing may serve");
        // The other children are still built as usual: only the proxy is held.
        assert_eq!(d.proxy_service.metadata.name, open.proxy_service.metadata.name, "{field}");
        assert_eq!(d.config_map.data, open.config_map.data, "{field}: the RunConfig does not change");
    }
    // Unset again, the same spec gives back its replicas.
    assert_eq!(
        desired(&fetch(base), &settings(), &Referenced::default()).unwrap().deployment.spec.unwrap().replicas,
        Some(2)
    );
}

#[test]
fn audit_off_asks_for_nothing_and_unapplied_plain_fields_do_not_block() {
    let mut spec = seed_spec();
    spec.audit = Some(crate::crd::common::AuditConfig { enabled: Some(false) });
    assert!(unapplied(&spec).is_empty());
    spec.backend_replicas = Some(2);
    let d = desired(&fetch(spec), &settings(), &Referenced::default()).unwrap();
    assert_eq!((d.unapplied.blocking.len(), d.unapplied.ignored.clone()), (0, vec!["spec.backendReplicas"]));
    assert_eq!(d.deployment.spec.unwrap().replicas, None, "an ignored field leaves the replicas alone");
}

/// The seed spec with every enforced protection field of the fixtures set.
fn protected_spec() -> MCPServerSpec {
    let mut spec = serde_json::to_value(seed_spec()).unwrap();
    for (k, v) in crate::reconcile::policy::fixtures::spec_fields().as_object().unwrap() {
        spec[k] = v.clone();
    }
    spec["replicas"] = serde_json::json!(2);
    serde_json::from_value(spec).unwrap()
}

fn run_config_of(d: &Desired) -> RunConfig {
    serde_json::from_str(&d.config_map.data.as_ref().unwrap()["runconfig.json"]).unwrap()
}

#[test]
fn enforced_protections_reach_the_runconfig_and_the_proxy_serves() {
    use crate::reconcile::policy::{CLIENT_SECRET_ENV, fixtures};
    let d = desired(&fetch(protected_spec()), &settings(), &fixtures::found()).unwrap();
    assert!(d.refused.is_none() && d.unapplied.is_empty(), "{:?} {:?}", d.refused, d.unapplied);
    assert_eq!(d.deployment.spec.as_ref().unwrap().replicas, Some(2));
    let policy = run_config_of(&d).policy;
    assert_eq!(policy.oidc.as_ref().unwrap().audience.as_deref(), Some("fetch"));
    assert_eq!(policy.authz.as_ref().unwrap()["type"], "cedarv1");
    assert_eq!(policy.tools.filter, ["echo", "add"]);
    assert_eq!(policy.audit, Some(serde_json::json!({})));
    // The secret reaches the runner as a secretKeyRef; the RunConfig only names the variable.
    let text = &d.config_map.data.as_ref().unwrap()["runconfig.json"];
    assert!(!text.contains("keycloak-client"), "the Secret is not named in the ConfigMap");
    let pod = d.deployment.spec.as_ref().unwrap().template.spec.clone().unwrap();
    let var = pod.containers[0].env.iter().flatten().find(|e| e.name == CLIENT_SECRET_ENV).unwrap();
    assert!(var.value.is_none());
    assert_eq!(var.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap().name, "keycloak-client");
    assert!(d.hashes.oidc.is_some() && d.hashes.authz.is_some() && d.hashes.tools.is_some());
}

#[test]
fn a_changed_referenced_object_changes_the_checksum_once() {
    use crate::reconcile::policy::fixtures;
    let a = desired(&fetch(protected_spec()), &settings(), &fixtures::found()).unwrap();
    let again = desired(&fetch(protected_spec()), &settings(), &fixtures::found()).unwrap();
    assert_eq!(a.checksum, again.checksum, "unchanged objects, unchanged RunConfig: nothing rolls");
    let mut changed = fixtures::found();
    changed.tools = Some(fixtures::tools(serde_json::json!({"toolsFilter": ["echo"]})));
    let b = desired(&fetch(protected_spec()), &settings(), &changed).unwrap();
    assert_ne!(a.checksum, b.checksum);
    let annotation = |d: &Desired| {
        d.deployment.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().annotations.clone().unwrap()
            [CHECKSUM_ANNOTATION]
            .clone()
    };
    assert_eq!(annotation(&b), b.checksum, "the pod template carries the new checksum, so it rolls");
}

#[test]
fn a_reference_that_cannot_be_served_holds_the_proxy_at_zero_without_its_policy() {
    use crate::reconcile::policy::fixtures;
    let mut missing = fixtures::found();
    missing.tools = None;
    let d = desired(&fetch(protected_spec()), &settings(), &missing).unwrap();
    assert_eq!(d.refused.as_ref().unwrap().to_string(), "spec.toolConfigRef: MCPToolConfig tools not found");
    assert_eq!(d.deployment.spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(d.hashes, Default::default());
    let pod = d.deployment.spec.as_ref().unwrap().template.spec.clone().unwrap();
    assert!(
        pod.containers[0]
            .env
            .iter()
            .flatten()
            .all(|e| e.value_from.as_ref().is_none_or(|v| v.secret_key_ref.is_none()))
    );

    // An SSE server cannot have its lists filtered: refused rather than a crashing proxy.
    let mut sse = protected_spec();
    sse.transport = Some(ServerTransport::Sse);
    let d = desired(&fetch(sse), &settings(), &fixtures::found()).unwrap();
    assert!(d.refused.unwrap().to_string().starts_with("spec.transport: authorization and tool filters"));
    assert_eq!(d.deployment.spec.unwrap().replicas, Some(0));
}

/// The seed spec with `externalAuthConfigRef` and `telemetryConfigRef` set, and the objects
/// they name: a header injected from a Secret, tracing, and Prometheus.
fn outgoing_and_telemetry(transport: ServerTransport) -> (MCPServer, Referenced) {
    use crate::reconcile::policy::fixtures;
    let mut spec = seed_spec();
    spec.transport = Some(transport);
    spec.external_auth_config_ref = Some(crate::crd::common::NameRef { name: "upstream".into() });
    spec.telemetry_config_ref = Some(serde_json::from_value(serde_json::json!({"name": "otel"})).unwrap());
    let found = Referenced {
        external_auth: Some(fixtures::external_auth(
            serde_json::json!({"type": "headerInjection", "headerInjection": {
            "headerName": "X-Upstream-Key", "valueSecretRef": {"name": "upstream-key", "key": "value"}}}),
        )),
        telemetry: Some(fixtures::telemetry(serde_json::json!({
            "openTelemetry": {"enabled": true, "endpoint": "collector:4318", "tracing": {"enabled": true}},
            "prometheus": {"enabled": true}}))),
        ..Default::default()
    };
    (fetch(spec), found)
}

#[test]
fn outgoing_credentials_and_telemetry_reach_the_runconfig_the_pod_and_the_service() {
    use crate::reconcile::policy::outgoing::HEADER_INJECTION_ENV;
    let (server, found) = outgoing_and_telemetry(ServerTransport::StreamableHttp);
    let d = desired(&server, &settings(), &found).unwrap();
    assert!(d.refused.is_none() && d.unapplied.is_empty(), "{:?} {:?}", d.refused, d.unapplied);
    assert_ne!(d.deployment.spec.as_ref().unwrap().replicas, Some(0));
    let rc = run_config_of(&d);
    assert_eq!(rc.policy.outgoing.header_env.get("X-Upstream-Key").map(String::as_str), Some(HEADER_INJECTION_ENV));
    assert_eq!(rc.telemetry.endpoint.as_deref(), Some("collector:4318"));
    assert_eq!(rc.telemetry.diagnostics_address.as_deref(), Some("0.0.0.0:9464"));
    rc.validate().unwrap();
    assert!(d.hashes.external_auth.is_some() && d.hashes.telemetry.is_some());

    let pod = d.deployment.spec.as_ref().unwrap().template.spec.clone().unwrap();
    let container = &pod.containers[0];
    let var = container.env.iter().flatten().find(|e| e.name == HEADER_INJECTION_ENV).unwrap();
    assert_eq!(var.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap().name, "upstream-key");
    let ports: Vec<(Option<&str>, i32)> =
        container.ports.iter().flatten().map(|p| (p.name.as_deref(), p.container_port)).collect();
    assert_eq!(ports, [(Some("http"), 8080), (Some("metrics"), 9464)]);
    for service in [&d.proxy_service, &d.alias_service] {
        let ports = service.spec.as_ref().unwrap().ports.clone().unwrap();
        let metrics = ports.iter().find(|p| p.name.as_deref() == Some("metrics")).unwrap();
        assert_eq!((metrics.port, metrics.target_port.clone()), (9464, Some(IntOrString::String("metrics".into()))));
    }
    // Without the telemetry reference there is no metrics port to expose.
    let plain = desired(&fetch(seed_spec()), &settings(), &Referenced::default()).unwrap();
    assert_eq!(plain.proxy_service.spec.unwrap().ports.unwrap().len(), 1);
}

#[test]
fn outgoing_credentials_on_a_stdio_server_are_refused_instead_of_crashing_the_proxy() {
    let (server, found) = outgoing_and_telemetry(ServerTransport::Stdio);
    let d = desired(&server, &settings(), &found).unwrap();
    let refused = d.refused.as_ref().unwrap().to_string();
    assert!(refused.starts_with("spec.externalAuthConfigRef: a stdio server is not reached over HTTP"), "{refused}");
    assert_eq!(d.deployment.spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(d.hashes, Default::default());
    // `unauthenticated` sends nothing, so a stdio server may name it.
    let mut found = found;
    found.external_auth =
        Some(crate::reconcile::policy::fixtures::external_auth(serde_json::json!({"type": "unauthenticated"})));
    let d = desired(&server, &settings(), &found).unwrap();
    assert!(d.refused.is_none(), "{:?}", d.refused);
}
