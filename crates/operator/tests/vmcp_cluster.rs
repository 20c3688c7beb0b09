//! The VirtualMCPServer reconciler against a REAL one-node cluster (`cargo xtask cluster up`):
//! seed 002's group and entry (`tests/seeds/002-*.yaml`, moved to a scratch namespace), an
//! MCPServer of the group and a VirtualMCPServer in discovered mode over it. Checks the children,
//! the backends the operator writes into the ConfigMap, `status.discoveredBackends`, the
//! `kubectl get vmcp` columns, and that a member joining and leaving the group rewrites the
//! ConfigMap and the status WITHOUT changing the Deployment's pod template. The vMCP pod itself
//! cannot start here (its image is `apiary.invalid/apiary:never`): the status must say Pending,
//! with why, never Ready. Three tests run the REAL image (`cargo xtask image --push`):
//! - the vMCP over an MCPServer, a stdio MCPServer, an MCPRemoteProxy and an in-cluster
//!   MCPServerEntry lists every backend's tools, prefixed, reports each at its kind's URL in
//!   `status.discoveredBackends`, routes calls to the owner (the entry's header from a Secret
//!   reaches only the entry), and picks up an MCPServer added to the group without a new pod;
//! - an HTTPS entry (TLS terminated on the node with a CA made here) is served when its
//!   `caBundleRef` ConfigMap holds that CA and left out, failing in `/status`, with another CA;
//! - a token-exchange entry against a real Keycloak (on the host, reached through the node):
//!   no token is 401, and the backend sees a token exchanged for its audience, never the
//!   caller's (the IdP's private CA trusted through the MCPOIDCConfig's `caBundleRef`).
//!
//! Runs only with `APIARY_CLUSTER_TESTS` set (the Keycloak test also needs `cargo xtask test-env`).

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::Arc;

use apiary_operator::crd::mcpserverentry::MCPServerEntry;
use apiary_operator::crd::virtualmcpserver::{VirtualMCPServer, VirtualMCPServerPhase};
use apiary_operator::reconcile::{Context, Metrics, WatchScope};
use apiary_operator::{entry, extauth, group, vmcp};
use apiary_testkit::keycloak::{
    BACKEND_AUDIENCE, GATEWAY_CLIENT, GATEWAY_SECRET, Keycloak, REALM, USER_CLIENT, decode_claims,
};
use common::cluster::{
    Child, Stop, apply, controlled_by, eventually, gated, in_scratch_namespace, in_scratch_namespace_with, kubeconfig,
    kubectl, meta_of, seed_file, template_checksum,
};
use common::node_tls::{HostSocket, Listen, NODE_IP, NodeListener, TestPki};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

const VMCP: &str = "my-vmcp";

async fn controllers(ctx: Arc<Context>, scope: WatchScope, stop: Stop) {
    tokio::join!(
        entry::run(Arc::clone(&ctx), scope.clone(), stop.clone()),
        group::run(Arc::clone(&ctx), scope.clone(), stop.clone()),
        extauth::run(Arc::clone(&ctx), scope.clone(), stop.clone()),
        vmcp::run(ctx, scope, stop),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_mcp_server_follows_its_group_live_on_a_real_cluster() {
    gated(in_scratch_namespace("apiary-vmcp", controllers, checks)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_mcp_server_fails_closed_and_recovers_on_a_real_cluster() {
    gated(in_scratch_namespace("apiary-vmcp-fc", controllers, fail_closed)).await;
}

fn doc(ns: &str, kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "toolhive.stacklok.dev/v1alpha1", "kind": kind,
        "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// The backends of the config file in ConfigMap `my-vmcp-vmcp-config`, by name.
async fn config_backends(cms: &Api<ConfigMap>) -> Option<(Value, Vec<String>)> {
    let cm = cms.get_opt(&format!("{VMCP}-vmcp-config")).await.ok()??;
    let text = cm.data?.get("config.yaml")?.clone();
    let config: Value = serde_saphyr::from_str(&text).unwrap();
    let names = config["backends"].as_array()?.iter().map(|b| b["name"].as_str().unwrap().to_string()).collect();
    Some((config, names))
}

/// Waits until the ConfigMap serves exactly `names` and the status lists them; returns both.
async fn serves(cms: &Api<ConfigMap>, vmcps: &Api<VirtualMCPServer>, names: &[&str]) -> (Value, VirtualMCPServer) {
    eventually(&format!("the vMCP serves {names:?}"), || async {
        let (config, got) = config_backends(cms).await?;
        let v = vmcps.get(VMCP).await.ok()?;
        let s = v.status.as_ref()?;
        let listed: Vec<&str> = s.discovered_backends.as_ref()?.iter().map(|b| b.name.as_str()).collect();
        (got == names && listed == names && s.backend_count == Some(names.len() as i32)).then_some((config, v.clone()))
    })
    .await
}

async fn checks(client: Client, ns: String, _metrics: Arc<Metrics>) {
    let vmcps: Api<VirtualMCPServer> = Api::namespaced(client.clone(), &ns);
    let entries: Api<MCPServerEntry> = Api::namespaced(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    // Seed 002's group and entry, an MCPServer of the group, and the VirtualMCPServer.
    for file in ["002-my-group.yaml", "002-my-entry.yaml"] {
        for d in seed_file(file, &ns) {
            apply(&client, &ns, &d).await;
        }
    }
    let server = json!({"image": "ghcr.io/stackloklabs/gofetch/server:latest", "transport": "streamable-http",
        "proxyPort": 8080, "mcpPort": 8080, "groupRef": "my-group"});
    apply(&client, &ns, &doc(&ns, "MCPServer", "fetch", server)).await;
    let spec = json!({"config": {"groupRef": "my-group"}, "incomingAuth": {"type": "anonymous"}});
    apply(&client, &ns, &doc(&ns, "VirtualMCPServer", VMCP, spec)).await;

    // The children, each owned by the VirtualMCPServer.
    let (config, v) = serves(&cms, &vmcps, &["fetch", "my-remote-tool"]).await;
    let uid = v.metadata.uid.clone().unwrap();
    let deployment = format!("vmcp-{VMCP}");
    let account = format!("{VMCP}-vmcp");
    let config_map = format!("{VMCP}-vmcp-config");
    for child in [
        Child::Deployment(&deployment),
        Child::Service(&deployment),
        Child::ConfigMap(&config_map),
        Child::ServiceAccount(&account),
        Child::Role(&account),
        Child::RoleBinding(&account),
    ] {
        let meta = meta_of(&client, &ns, child).await;
        assert!(controlled_by(&meta, &uid, "VirtualMCPServer"), "{child} is owned");
        assert_eq!(meta.labels.unwrap()["app.kubernetes.io/name"], "virtualmcpserver", "{child}");
    }
    let svc = Api::<Service>::namespaced(client.clone(), &ns).get(&deployment).await.unwrap();
    assert_eq!(svc.spec.unwrap().ports.unwrap()[0].port, 4483);
    let role = Api::<Role>::namespaced(client.clone(), &ns).get(&account).await.unwrap();
    assert!(role.rules.unwrap()[0].resources.as_ref().unwrap().contains(&"mcpserverentries".to_string()));
    let d = deployments.get(&deployment).await.unwrap();
    assert_eq!(d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].name, "vmcp");

    // The backends the operator resolved.
    assert_eq!(config["groupRef"], "my-group");
    let b = |n: &str| config["backends"].as_array().unwrap().iter().find(|b| b["name"] == n).unwrap().clone();
    assert_eq!(b("fetch")["url"], format!("http://mcp-fetch-proxy.{ns}.svc.cluster.local:8080/mcp"));
    assert_eq!(
        (b("my-remote-tool")["url"].as_str(), b("my-remote-tool")["type"].as_str()),
        (Some("https://mcp.example.com/mcp"), Some("entry"))
    );

    // The pod cannot start here: Pending with the reason, never Ready.
    let v = eventually("the vMCP says why it is pending", || async {
        let v = vmcps.get(VMCP).await.ok()?;
        let s = v.status.as_ref()?;
        (s.phase == Some(VirtualMCPServerPhase::Pending) && s.message.as_deref()?.contains("cannot be pulled"))
            .then_some(v.clone())
    })
    .await;
    let s = v.status.as_ref().unwrap();
    assert_eq!(s.url.as_deref(), Some(format!("http://vmcp-{VMCP}.{ns}.svc.cluster.local:4483").as_str()));
    let conditions = s.conditions.as_ref().unwrap();
    let ready = conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "False");
    for t in ["GroupRefValidated", "BackendsDiscovered"] {
        assert!(conditions.iter().any(|c| c.type_ == t && c.status == "True"), "{t} in {conditions:#?}");
    }
    let by_name = |n: &str| s.discovered_backends.as_ref().unwrap().iter().find(|b| b.name == n).unwrap().clone();
    assert_eq!(by_name("my-remote-tool").status.as_deref(), Some("ready"), "the entry is Valid");
    assert_eq!(by_name("fetch").status.as_deref(), Some("unknown"), "no MCPServer controller runs here");

    // `kubectl get vmcp` shows the columns of names.md.
    let out = std::process::Command::new(kubectl())
        .args(["--kubeconfig", kubeconfig().to_str().unwrap(), "-n", &ns, "get", "vmcp", VMCP])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "PHASE", "URL", "BACKENDS", "AGE", "READY"]);
    let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!((row[0], row[1], row[3], row[5]), (VMCP, "Pending", "2", "False"), "{text}");
    assert!(row[2].starts_with("http://vmcp-my-vmcp."), "{text}");

    // A member joins: the ConfigMap and the status follow, the pod template does not change.
    let before = deployments.get(&deployment).await.unwrap();
    let joiner = json!({"groupRef": "my-group", "remoteURL": "https://joiner.example.com/mcp",
        "transport": "streamable-http", "headerForward": {"addPlaintextHeaders": {"X-Tenant-ID": "eng"}}});
    apply(&client, &ns, &doc(&ns, "MCPServerEntry", "joiner", joiner)).await;
    let (config, _) = serves(&cms, &vmcps, &["fetch", "joiner", "my-remote-tool"]).await;
    let j = config["backends"].as_array().unwrap().iter().find(|b| b["name"] == "joiner").unwrap().clone();
    assert_eq!(j["headers"], json!({"X-Tenant-ID": "eng"}));
    let after = deployments.get(&deployment).await.unwrap();
    assert_eq!(after.metadata.generation, before.metadata.generation, "the Deployment was not changed");
    assert_eq!(template_checksum(&after), template_checksum(&before));
    assert_eq!(after.spec.unwrap().template, before.spec.unwrap().template);

    // ... and leaves again.
    entries.delete("joiner", &DeleteParams::default()).await.unwrap();
    serves(&cms, &vmcps, &["fetch", "my-remote-tool"]).await;
    assert_eq!(deployments.get(&deployment).await.unwrap().metadata.generation, before.metadata.generation);
}

/// Waits for `vmcp` to be `phase` with `Ready` reason `reason` and `condition` at `status`.
async fn reaches(vmcps: &Api<VirtualMCPServer>, phase: VirtualMCPServerPhase, reason: &str, condition: (&str, &str)) {
    eventually(&format!("{phase:?} ({reason}), {condition:?}"), || async {
        let s = vmcps.get("guarded").await.ok()?.status?;
        let cs = s.conditions.as_ref()?;
        let ready = cs.iter().any(|c| c.type_ == "Ready" && c.reason == reason);
        let other = cs.iter().any(|c| c.type_ == condition.0 && c.status == condition.1);
        (s.phase == Some(phase) && ready && other).then_some(())
    })
    .await;
}

/// Waits for a Warning event `reason` about `guarded` whose note names `field`.
async fn warned(events: &Api<Event>, reason: &str, field: &str) {
    eventually(&format!("a {reason} warning naming {field}"), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("guarded")
                    && e.reason.as_deref() == Some(reason)
                    && e.type_.as_deref() == Some("Warning")
                    && e.note.as_deref().is_some_and(|n| n.contains(field))
            })
            .then_some(())
    })
    .await;
}

async fn replicas(deployments: &Api<Deployment>) -> Option<i32> {
    deployments.get("vmcp-guarded").await.ok()?.spec?.replicas
}

async fn fail_closed(client: Client, ns: String, _metrics: Arc<Metrics>) {
    let vmcps: Api<VirtualMCPServer> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);

    // A group that does not exist yet: Failed, held at zero, a warning naming the field.
    let mut spec = json!({"config": {"groupRef": "late-group"}, "incomingAuth": {"type": "anonymous"}});
    apply(&client, &ns, &doc(&ns, "VirtualMCPServer", "guarded", spec.clone())).await;
    reaches(&vmcps, VirtualMCPServerPhase::Failed, "InvalidReference", ("GroupRefValidated", "False")).await;
    assert_eq!(replicas(&deployments).await, Some(0));
    warned(&events, "InvalidReference", "spec.config.groupRef").await;

    // The group appears: the watch on MCPGroup brings the vMCP back without touching it.
    apply(&client, &ns, &doc(&ns, "MCPGroup", "late-group", json!({}))).await;
    reaches(&vmcps, VirtualMCPServerPhase::Pending, "DeploymentUnavailable", ("GroupRefValidated", "True")).await;
    assert_ne!(replicas(&deployments).await, Some(0));

    // Rate limits Apiary cannot enforce: Failed, held at zero, named.
    spec["config"]["rateLimiting"] = json!({"shared": {"requestsPerMinute": 10}});
    apply(&client, &ns, &doc(&ns, "VirtualMCPServer", "guarded", spec)).await;
    reaches(&vmcps, VirtualMCPServerPhase::Failed, "UnsupportedFeature", ("FeaturesApplied", "False")).await;
    assert_eq!(replicas(&deployments).await, Some(0));
    warned(&events, "UnsupportedFeature", "spec.config.rateLimiting").await;

    // Drift: a deleted child comes back.
    let old = cms.get("guarded-vmcp-config").await.unwrap().metadata.uid;
    cms.delete("guarded-vmcp-config", &DeleteParams::default()).await.unwrap();
    eventually("the ConfigMap comes back", || async {
        let cm = cms.get_opt("guarded-vmcp-config").await.ok()??;
        (cm.metadata.uid != old && cm.data?.contains_key("config.yaml")).then_some(())
    })
    .await;
}

/// The image `cargo xtask image --push` publishes (the runner, and so the vMCP).
const RUNNER_IMAGE: &str = "ghcr.io/stacklok/toolhive/proxyrunner:latest";
/// The fixture server over Streamable HTTP on 8080 (`/mcp`).
const FIXTURE_IMAGE: &str = "ghcr.io/stackloklabs/gofetch/server:latest";
/// Bound on the running vMCP re-reading its mounted ConfigMap (the kubelet's sync period, then
/// the vMCP's 2 s poll).
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(240);

/// The fixture server over stdio (`apiary-testkit-server --stdio`), as seed 003's image.
const STDIO_FIXTURE_IMAGE: &str = "docker.io/mcp/fetch:latest";

async fn all_controllers(ctx: Arc<Context>, scope: WatchScope, stop: Stop) {
    tokio::join!(
        apiary_operator::reconcile::run(Arc::clone(&ctx), scope.clone(), stop.clone()),
        apiary_operator::remoteproxy::run(Arc::clone(&ctx), scope.clone(), stop.clone()),
        controllers(ctx, scope, stop),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_vmcp_serves_servers_a_remote_proxy_and_an_entry_and_follows_its_group_on_a_real_cluster() {
    gated(in_scratch_namespace_with(RUNNER_IMAGE, "apiary-vmcp-e2e", all_controllers, served)).await;
}

async fn create<K>(client: &Client, ns: &str, value: Value)
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).unwrap();
    Api::<K>::namespaced(client.clone(), ns).create(&PostParams::default(), &object).await.unwrap();
}

/// The pods of vMCP `name`, by uid.
async fn vmcp_pods(pods: &Api<Pod>, name: &str) -> Vec<String> {
    let selector = format!("app.kubernetes.io/name=virtualmcpserver,app.kubernetes.io/instance={name}");
    let list = pods.list(&ListParams::default().labels(&selector)).await.unwrap();
    let mut uids: Vec<String> = list
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.uid)
        .collect();
    uids.sort();
    uids
}

/// The sorted tool names of a `tools/list` answer.
fn tool_names(answer: &Value) -> Option<Vec<String>> {
    let mut names: Vec<String> =
        answer["result"]["tools"].as_array()?.iter().filter_map(|t| t["name"].as_str().map(str::to_string)).collect();
    names.sort();
    Some(names)
}

/// The fixture server as Deployment and Service `fixture` (port 8080); the Service.
async fn fixture(client: &Client, ns: &str) -> Service {
    create::<Deployment>(
        client,
        ns,
        json!({
            "metadata": {"name": "fixture"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "fixture"}},
                "template": {"metadata": {"labels": {"app": "fixture"}},
                    "spec": {"containers": [{"name": "fixture", "image": FIXTURE_IMAGE,
                        "ports": [{"containerPort": 8080}]}]}}}
        }),
    )
    .await;
    create::<Service>(
        client,
        ns,
        json!({"metadata": {"name": "fixture"},
            "spec": {"selector": {"app": "fixture"}, "ports": [{"port": 8080, "targetPort": 8080}]}}),
    )
    .await;
    Api::<Service>::namespaced(client.clone(), ns).get("fixture").await.unwrap()
}

async fn served(client: Client, ns: String, _metrics: Arc<Metrics>) {
    let vmcps: Api<VirtualMCPServer> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    // The entry's backend: the fixture as a Deployment and Service, reached by its DNS name;
    // the header it must receive comes from a Secret (made here: only the Secret can carry it).
    let key = format!("k-{}-{}", std::process::id(), apiary_testkit::issuer::now());
    create::<Secret>(&client, &ns, json!({"metadata": {"name": "entry-key"}, "stringData": {"value": key}})).await;
    fixture(&client, &ns).await;

    apply(&client, &ns, &doc(&ns, "MCPGroup", "team", json!({}))).await;
    let server = |group: &str| {
        json!({"image": FIXTURE_IMAGE, "transport": "streamable-http", "proxyPort": 8080, "mcpPort": 8080,
            "groupRef": group})
    };
    apply(&client, &ns, &doc(&ns, "MCPServer", "alpha", server("team"))).await;
    // A stdio server (its proxy speaks Streamable HTTP to the vMCP) and a remote proxy in front
    // of the fixture, reached by its DNS name.
    let stdio = json!({"image": STDIO_FIXTURE_IMAGE, "transport": "stdio", "proxyPort": 8080, "groupRef": "team"});
    apply(&client, &ns, &doc(&ns, "MCPServer", "gamma", stdio)).await;
    let relay = json!({"remoteURL": format!("http://fixture.{ns}.svc.cluster.local:8080/mcp"),
        "transport": "streamable-http", "proxyPort": 8080, "allowPrivateEndpoint": true, "groupRef": "team"});
    apply(&client, &ns, &doc(&ns, "MCPRemoteProxy", "relay", relay)).await;
    let entry = json!({
        "groupRef": "team", "transport": "streamable-http", "allowPrivateEndpoint": true,
        "remoteURL": format!("http://fixture.{ns}.svc.cluster.local:8080/mcp"),
        "headerForward": {"addHeadersFromSecret": [
            {"headerName": "X-Entry-Key", "valueSecretRef": {"name": "entry-key", "key": "value"}}]}
    });
    apply(&client, &ns, &doc(&ns, "MCPServerEntry", "remote", entry)).await;
    let spec = json!({"config": {"groupRef": "team"}, "incomingAuth": {"type": "anonymous"}});
    apply(&client, &ns, &doc(&ns, "VirtualMCPServer", VMCP, spec)).await;

    eventually("the vMCP Ready", || async {
        let s = vmcps.get(VMCP).await.ok()?.status?;
        (s.phase == Some(VirtualMCPServerPhase::Ready)).then_some(())
    })
    .await;

    // The status lists each member once, at the URL of its kind: an MCPServer's proxy Service
    // (stdio or not), a remote proxy's Service, an entry's own remote URL.
    let urls = eventually("every member in status.discoveredBackends", || async {
        let s = vmcps.get(VMCP).await.ok()?.status?;
        let urls: Vec<(String, String)> =
            s.discovered_backends?.into_iter().map(|b| (b.name, b.url.unwrap_or_default())).collect();
        (urls.len() == 4).then_some(urls)
    })
    .await;
    let svc = |service: &str| format!("http://{service}.{ns}.svc.cluster.local:8080/mcp");
    let expected = [
        ("alpha", svc("mcp-alpha-proxy")),
        ("gamma", svc("mcp-gamma-proxy")),
        ("relay", svc("mcp-relay-remote-proxy")),
        ("remote", svc("fixture")),
    ];
    let expected: Vec<(String, String)> = expected.into_iter().map(|(n, u)| (n.to_string(), u)).collect();
    assert_eq!(urls, expected);

    // One session through the Service: every backend's tools, prefixed (all four are the same
    // fixture, so every name clashes).
    let forward = PortForward::start(&ns, &format!("service/vmcp-{VMCP}"), 4483);
    let session = eventually("a vMCP session", || async { forward.session() }).await;
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let names = eventually("every backend listed", || async {
        let names = tool_names(&forward.post(Some(&session), list)?)?;
        ["alpha", "gamma", "relay", "remote"].iter().all(|b| names.contains(&format!("{b}_echo"))).then_some(names)
    })
    .await;
    assert!(!names.contains(&"echo".to_string()), "every name is prefixed: {names:?}");

    // Each call reaches its owner: the fixture reports its pod's name (HOSTNAME), so the stdio
    // server answers from its own pod and the remote proxy from the fixture behind it.
    let hostname = |tool: &str| {
        let call = format!(
            r#"{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"name":"HOSTNAME"}}}}}}"#
        );
        let answer = forward.post(Some(&session), &call).unwrap();
        answer["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{tool}: {answer}")).to_string()
    };
    let (gamma, relay, remote) = (hostname("gamma_env"), hostname("relay_env"), hostname("remote_env"));
    assert!(gamma.starts_with("gamma"), "the stdio server's own pod answered: {gamma}");
    assert!(relay.starts_with("fixture-") && remote.starts_with("fixture-"), "{relay}, {remote}");

    // Calls reach the owner: the entry's backend sees the Secret's header, the MCPServer's does not.
    let header = |tool: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"name":"x-entry-key"}}}}}}"#
        )
    };
    let via_entry = forward.post(Some(&session), &header("remote_request_header")).unwrap();
    assert_eq!(via_entry["result"]["content"][0]["text"], key.as_str(), "{via_entry}");
    let via_server = forward.post(Some(&session), &header("alpha_request_header")).unwrap();
    assert_eq!(via_server["result"]["isError"], true, "the header went to the entry only: {via_server}");
    let via_relay = forward.post(Some(&session), &header("relay_request_header")).unwrap();
    assert_eq!(via_relay["result"]["isError"], true, "the header went to the entry only: {via_relay}");

    // A member joins: served by the running pod (no new pod), on the open session and new ones.
    let pods_before = vmcp_pods(&pods, VMCP).await;
    assert_eq!(pods_before.len(), 1, "{pods_before:?}");
    let generation = deployments.get(&format!("vmcp-{VMCP}")).await.unwrap().metadata.generation;
    apply(&client, &ns, &doc(&ns, "MCPServer", "beta", server("team"))).await;
    let deadline = tokio::time::Instant::now() + RELOAD_WAIT;
    loop {
        let names = forward.post(Some(&session), list).and_then(|a| tool_names(&a)).unwrap_or_default();
        if names.contains(&"beta_echo".to_string()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "beta never listed; last list: {names:?}");
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
    let echo =
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"beta_echo","arguments":{"text":"hi"}}}"#;
    assert_eq!(forward.post(Some(&session), echo).unwrap()["result"]["content"][0]["text"], "hi");
    assert_eq!(vmcp_pods(&pods, VMCP).await, pods_before, "the vMCP pod was not replaced");
    assert_eq!(deployments.get(&format!("vmcp-{VMCP}")).await.unwrap().metadata.generation, generation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_vmcp_trusts_a_tls_entry_only_through_its_ca_bundle_on_a_real_cluster() {
    gated(in_scratch_namespace_with(RUNNER_IMAGE, "apiary-vmcp-tls", all_controllers, tls_entry)).await;
}

async fn tls_entry(client: Client, ns: String, _metrics: Arc<Metrics>) {
    let vmcps: Api<VirtualMCPServer> = Api::namespaced(client.clone(), &ns);

    // The fixture behind TLS: a certificate for the Service name `tls-fixture`, from a CA made
    // here; the Service's only endpoint is the node, where socat terminates TLS.
    let fixture_ip = fixture(&client, &ns).await.spec.unwrap().cluster_ip.unwrap();
    let dns = format!("tls-fixture.{ns}.svc.cluster.local");
    let pki = TestPki::new(&dns);
    let tls = NodeListener::start(Listen::Tls(&pki), &format!("TCP:{fixture_ip}:8080"));
    create::<Service>(
        &client,
        &ns,
        json!({"metadata": {"name": "tls-fixture"},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": tls.port}]}}),
    )
    .await;
    create::<EndpointSlice>(
        &client,
        &ns,
        json!({"metadata": {"name": "tls-fixture-node", "labels": {"kubernetes.io/service-name": "tls-fixture"}},
            "addressType": "IPv4", "endpoints": [{"addresses": [NODE_IP]}],
            "ports": [{"name": "https", "port": tls.port, "protocol": "TCP"}]}),
    )
    .await;
    for (name, pem) in [("good-ca", pki.ca_pem()), ("wrong-ca", pki.other_ca_pem())] {
        create::<ConfigMap>(&client, &ns, json!({"metadata": {"name": name}, "data": {"ca.crt": pem}})).await;
    }

    // Two entries of the same HTTPS URL: one trusts the CA that signed its certificate, the
    // other a CA that did not.
    apply(&client, &ns, &doc(&ns, "MCPGroup", "team", json!({}))).await;
    let entry = |ca: &str| {
        json!({"groupRef": "team", "transport": "streamable-http", "allowPrivateEndpoint": true,
            "remoteURL": format!("https://{dns}/mcp"),
            "caBundleRef": {"configMapRef": {"name": ca, "key": "ca.crt"}}})
    };
    apply(&client, &ns, &doc(&ns, "MCPServerEntry", "secure", entry("good-ca"))).await;
    apply(&client, &ns, &doc(&ns, "MCPServerEntry", "untrusted", entry("wrong-ca"))).await;
    let spec = json!({"config": {"groupRef": "team"}, "incomingAuth": {"type": "anonymous"}});
    apply(&client, &ns, &doc(&ns, "VirtualMCPServer", VMCP, spec)).await;
    eventually("the vMCP Ready", || async {
        let s = vmcps.get(VMCP).await.ok()?.status?;
        (s.phase == Some(VirtualMCPServerPhase::Ready)).then_some(())
    })
    .await;

    // The trusted entry is listed and answers over TLS; the other is never trusted silently.
    let forward = PortForward::start(&ns, &format!("service/vmcp-{VMCP}"), 4483);
    let session = eventually("a vMCP session", || async { forward.session() }).await;
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let names = eventually("the trusted entry listed", || async {
        let names = tool_names(&forward.post(Some(&session), list)?)?;
        names.contains(&"secure_echo".to_string()).then_some(names)
    })
    .await;
    assert!(names.iter().all(|n| !n.starts_with("untrusted_")), "{names:?}");
    let echo = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"secure_echo","arguments":{"text":"over tls"}}}"#;
    assert_eq!(forward.post(Some(&session), echo).unwrap()["result"]["content"][0]["text"], "over tls");
    let refused =
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"untrusted_echo","arguments":{"text":"x"}}}"#;
    let refused = forward.post(Some(&session), refused).unwrap();
    assert_eq!(refused["error"]["code"], -32602, "{refused}");

    // `/status` names the failure: the untrusted entry failed, the trusted one did not.
    let status = eventually("the untrusted entry reported failing", || async {
        let status = forward.get("/status")?;
        let backend = |n: &str| status["backends"].as_array()?.iter().find(|b| b["name"] == n).cloned();
        let bad = backend("untrusted")?;
        (bad["consecutiveFailures"].as_u64()? >= 1 && bad["lastError"].is_string()).then_some(status)
    })
    .await;
    let backend = |n: &str| status["backends"].as_array().unwrap().iter().find(|b| b["name"] == n).unwrap().clone();
    assert_ne!(backend("untrusted")["status"], "healthy", "{status}");
    assert!(status["missingFromLastList"].as_array().unwrap().contains(&json!("untrusted")), "{status}");
    assert_eq!(backend("secure")["consecutiveFailures"], 0, "{status}");
    drop(tls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_vmcp_exchanges_each_callers_keycloak_token_for_a_token_exchange_entry_on_a_real_cluster() {
    gated(in_scratch_namespace_with(RUNNER_IMAGE, "apiary-vmcp-sts", all_controllers, token_exchange)).await;
}

/// A password grant at Keycloak on `127.0.0.1:port` as if asked at `http://{host}`: Keycloak
/// takes the issuer from the Host header, so the token names the issuer the pods see.
fn caller_token(port: u16, host: &str, user: &str) -> String {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-f", "--max-time", "30", "-H", &format!("Host: {host}")])
        .args(["-d", "grant_type=password", "-d", &format!("client_id={USER_CLIENT}")])
        .args(["-d", &format!("username={user}"), "-d", &format!("password={user}"), "-d", "scope=openid"])
        .arg(format!("http://127.0.0.1:{port}/realms/{REALM}/protocol/openid-connect/token"))
        .output()
        .unwrap();
    assert!(out.status.success(), "password grant: {}", String::from_utf8_lossy(&out.stderr));
    let set: Value = serde_json::from_slice(&out.stdout).unwrap();
    set["access_token"].as_str().unwrap().to_string()
}

async fn token_exchange(client: Client, ns: String, _metrics: Arc<Metrics>) {
    let vmcps: Api<VirtualMCPServer> = Api::namespaced(client.clone(), &ns);

    // Keycloak runs on this host; pods reach it as Service `keycloak`: plain HTTP on 80 (the
    // issuer, discovery, the JWKS) and HTTPS on 443 with a CA made here (the token endpoint,
    // which must be https), both through socat on the node and a unix socket to the host.
    let kc = Keycloak::start().await.unwrap();
    let dns = format!("keycloak.{ns}.svc.cluster.local");
    let issuer = format!("http://{dns}/realms/{REALM}");
    let pki = TestPki::new(&dns);
    let host = HostSocket::to_loopback(kc.port());
    let plain = NodeListener::start(Listen::Plain, &host.address());
    let tls = NodeListener::start(Listen::Tls(&pki), &host.address());
    create::<Service>(
        &client,
        &ns,
        json!({"metadata": {"name": "keycloak"}, "spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": plain.port},
            {"name": "https", "port": 443, "targetPort": tls.port}]}}),
    )
    .await;
    create::<EndpointSlice>(
        &client,
        &ns,
        json!({"metadata": {"name": "keycloak-node", "labels": {"kubernetes.io/service-name": "keycloak"}},
            "addressType": "IPv4", "endpoints": [{"addresses": [NODE_IP]}],
            "ports": [{"name": "http", "port": plain.port, "protocol": "TCP"},
                      {"name": "https", "port": tls.port, "protocol": "TCP"}]}),
    )
    .await;
    create::<ConfigMap>(&client, &ns, json!({"metadata": {"name": "idp-ca"}, "data": {"ca.crt": pki.ca_pem()}})).await;
    create::<Secret>(
        &client,
        &ns,
        json!({"metadata": {"name": "sts"}, "stringData": {"client-secret": GATEWAY_SECRET}}),
    )
    .await;

    // The backend (the fixture, reporting the Authorization header it got) as an entry whose
    // MCPExternalAuthConfig exchanges the caller's token for one addressed to BACKEND_AUDIENCE.
    fixture(&client, &ns).await;
    let v1beta1 = |kind: &str, name: &str, spec: Value| {
        json!({"apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": kind,
            "metadata": {"name": name, "namespace": ns}, "spec": spec})
    };
    let oidc = json!({"type": "inline", "inline": {"issuer": issuer, "insecureAllowHTTP": true,
        "caBundleRef": {"configMapRef": {"name": "idp-ca", "key": "ca.crt"}}}});
    apply(&client, &ns, &v1beta1("MCPOIDCConfig", "keycloak", oidc)).await;
    let exchange = json!({"type": "tokenExchange", "tokenExchange": {
        "tokenUrl": format!("https://{dns}/realms/{REALM}/protocol/openid-connect/token"),
        "clientId": GATEWAY_CLIENT, "clientSecretRef": {"name": "sts", "key": "client-secret"},
        "audience": BACKEND_AUDIENCE, "scopes": ["openid"]}});
    apply(&client, &ns, &v1beta1("MCPExternalAuthConfig", "exchange", exchange)).await;
    apply(&client, &ns, &doc(&ns, "MCPGroup", "team", json!({}))).await;
    let entry = json!({"groupRef": "team", "transport": "streamable-http", "allowPrivateEndpoint": true,
        "remoteURL": format!("http://fixture.{ns}.svc.cluster.local:8080/mcp"),
        "externalAuthConfigRef": {"name": "exchange"}});
    apply(&client, &ns, &doc(&ns, "MCPServerEntry", "partner", entry)).await;
    let spec = json!({"config": {"groupRef": "team"},
        "incomingAuth": {"type": "oidc", "oidcConfigRef": {"name": "keycloak", "audience": GATEWAY_CLIENT}}});
    apply(&client, &ns, &doc(&ns, "VirtualMCPServer", VMCP, spec)).await;

    let v = eventually("the vMCP Ready", || async {
        let v = vmcps.get(VMCP).await.ok()?;
        (v.status.as_ref()?.phase == Some(VirtualMCPServerPhase::Ready)).then_some(v)
    })
    .await;
    let partner = v.status.unwrap().discovered_backends.unwrap().into_iter().find(|b| b.name == "partner").unwrap();
    assert_eq!(
        (partner.auth_type.as_deref(), partner.auth_config_ref.as_deref()),
        (Some("token_exchange"), Some("exchange"))
    );

    // No token: 401 at the front.
    let mut forward = PortForward::start(&ns, &format!("service/vmcp-{VMCP}"), 4483);
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"cluster-test","version":"1"}}}"#;
    let status = eventually("the vMCP answers", || async { forward.status_of(init) }).await;
    assert_eq!(status, 401);

    // A caller with a Keycloak token: the backend sees a token Keycloak exchanged for its
    // audience, never the caller's own.
    let caller = caller_token(kc.port(), &dns, "mcp");
    assert_eq!(decode_claims(&caller).unwrap()["iss"], issuer.as_str());
    forward.token = Some(caller.clone());
    let session = eventually("a vMCP session with the caller's token", || async { forward.session() }).await;
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"partner_request_header","arguments":{"name":"authorization"}}}"#;
    let seen = eventually("the exchanged token at the backend", || async {
        let answer = forward.post(Some(&session), call)?;
        answer["result"]["content"][0]["text"].as_str().map(str::to_string)
    })
    .await;
    let exchanged = seen.strip_prefix("Bearer ").unwrap_or_else(|| panic!("not a bearer token: {seen}"));
    assert_ne!(exchanged, caller, "the caller's own token reached the backend");
    let claims = decode_claims(exchanged).unwrap();
    let aud = match &claims["aud"] {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    };
    assert!(aud.contains(&json!(BACKEND_AUDIENCE)), "{claims}");
    assert_eq!((claims["azp"].as_str(), claims["preferred_username"].as_str()), (Some(GATEWAY_CLIENT), Some("mcp")));
    drop((plain, tls, host));
}

/// `kubectl port-forward` to a Service, stopped when dropped; speaks MCP over curl.
struct PortForward {
    port: u16,
    child: std::process::Child,
    /// Sent as `Authorization: Bearer` with every MCP request, when set.
    token: Option<String>,
}

impl PortForward {
    fn start(ns: &str, target: &str, remote_port: u16) -> PortForward {
        use std::process::{Command, Stdio};
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("timeout")
            .args(["--kill-after=5", "540"])
            .arg(kubectl())
            .args(["-n", ns, "port-forward", target, &format!("{port}:{remote_port}")])
            .env("KUBECONFIG", kubeconfig())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        PortForward { port, child, token: None }
    }

    /// POSTs `body` to `/mcp` (in session `session`); the answer's headers and JSON-RPC message,
    /// `None` when curl failed or the status was not 200.
    fn exchange(&self, session: Option<&str>, body: &str) -> Option<(String, Value)> {
        let mut cmd = self.curl(&["-i"]);
        if let Some(s) = session {
            cmd.args(["-H", &format!("Mcp-Session-Id: {s}")]);
        }
        let out = cmd.args(["-d", body]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (headers, body) = text.split_once("\r\n\r\n")?;
        if headers.split_whitespace().nth(1)? != "200" {
            return None;
        }
        let body = body.trim();
        if body.starts_with('{') {
            return Some((headers.to_string(), serde_json::from_str(body).ok()?));
        }
        // An SSE stream: a priming event (empty data) and notifications may come first; the
        // answer is the message with a result or an error.
        let answer = body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
            .find(|m| m.get("result").is_some() || m.get("error").is_some())?;
        Some((headers.to_string(), answer))
    }

    /// curl POSTing to `/mcp` with the MCP headers (and the token), plus `extra` arguments.
    fn curl(&self, extra: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sS", "--max-time", "30", "-X", "POST"])
            .args(extra)
            .arg(format!("http://127.0.0.1:{}/mcp", self.port))
            .args(["-H", "Content-Type: application/json", "-H", "Accept: application/json, text/event-stream"])
            .args(["-H", "MCP-Protocol-Version: 2025-11-25"]);
        if let Some(t) = &self.token {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        cmd
    }

    /// The HTTP status of POSTing `body` outside any session (`None`: curl failed).
    fn status_of(&self, body: &str) -> Option<u16> {
        let out = self.curl(&["-o", "/dev/null", "-w", "%{http_code}"]).args(["-d", body]).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok().filter(|s| *s != 0)
    }

    /// GETs `path` as JSON; `None` unless curl got a 2xx with a JSON body.
    fn get(&self, path: &str) -> Option<Value> {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-f", "--max-time", "30"])
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .ok()?;
        out.status.success().then_some(())?;
        serde_json::from_slice(&out.stdout).ok()
    }

    fn post(&self, session: Option<&str>, body: &str) -> Option<Value> {
        self.exchange(session, body).map(|(_, v)| v)
    }

    /// Opens a session (`initialize`, then `notifications/initialized`); its id.
    fn session(&self) -> Option<String> {
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"cluster-test","version":"1"}}}"#;
        let (headers, answer) = self.exchange(None, init)?;
        answer["result"]["serverInfo"].as_object()?;
        let id = headers.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim().eq_ignore_ascii_case("mcp-session-id").then(|| value.trim().to_string())
        })?;
        let mut cmd = self.curl(&["-o", "/dev/null"]);
        cmd.args(["-H", &format!("Mcp-Session-Id: {id}")])
            .args(["-d", r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#]);
        cmd.status().ok()?.success().then_some(id)
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
