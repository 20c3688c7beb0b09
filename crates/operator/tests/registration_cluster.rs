//! Seed 004 against a REAL one-node cluster (`cargo xtask cluster up`). First, the third-party
//! CRDs (`cargo xtask crds`: Gateway API, Istio ServiceEntry, Kuadrant AuthPolicy) accept the
//! seed's manifests, taken from the seed text with `EXTERNAL_HOSTNAME` filled in, without
//! pruning a field, and the seed's `kubectl patch gateway` applies to a Gateway. Second, the
//! MCPServerRegistration reconciler: the seed's route, ExternalName Service and registration
//! (prefix `kube_`), with the Service pointing at the fixture MCP server on this host as the seed
//! points at kubernetes-mcp-server, become `Ready` with the fixture's tool count; the route
//! deleted gives `RouteNotFound`, recreated `Ready` again; a missing credential and a dead
//! backend give their reasons. Runs only with `APIARY_CLUSTER_TESTS` set.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::sync::Arc;

use apiary_operator::crd::registration::MCPServerRegistration;
use apiary_operator::reconcile::{Context, Metrics, WatchScope};
use apiary_operator::registration;
use apiary_transport::client::{ConnectOptions, McpClient};
use common::cluster::{Stop, apply, apply_foreign_crds, eventually, gated, in_scratch_namespace, kubectl};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{Value, json};

/// The seed's host name of the machine running kubernetes-mcp-server.
const SEED_HOST: &str = "kubernetes-mcp.example.com";

/// The text of seed 004.
fn seed_text() -> String {
    let dir = common::seed_text_dir();
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("004_"))
        .unwrap_or_else(|| panic!("no seed 004 in {}", dir.display()));
    std::fs::read_to_string(file).unwrap()
}

/// The bodies of the seed's `<<EOF` here-documents, in order.
fn heredocs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim_end().ends_with("<<EOF") => current = Some(Vec::new()),
            None => {}
            Some(_) if line.trim_end() == "EOF" => out.push(current.take().unwrap().join("\n")),
            Some(body) => body.push(line),
        }
    }
    out
}

/// The seed's YAML documents as written, `$EXTERNAL_HOSTNAME` set to `host`.
fn seed_manifests(host: &str) -> Vec<Value> {
    let text = seed_text();
    let docs: Vec<Value> = heredocs(&text)
        .iter()
        .flat_map(|body| serde_saphyr::from_multiple::<Value>(&body.replace("$EXTERNAL_HOSTNAME", host)).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    assert!(docs.len() >= 6, "seed 004 has route, service, service entry, registration, policy, binding: {docs:?}");
    docs
}

/// The JSON patch of the seed's `kubectl patch gateway … -p="[…]"`, `$EXTERNAL_HOSTNAME` set.
fn seed_gateway_patch(host: &str) -> Value {
    let text = seed_text();
    let start = text.find("-p=\"[").unwrap() + "-p=\"".len();
    let end = start + text[start..].find("]\"").unwrap() + 1;
    let shell_unquoted = text[start..end].replace("\\\"", "\"").replace("$EXTERNAL_HOSTNAME", host);
    serde_json::from_str(&shell_unquoted).unwrap()
}

/// Runs kubectl against the test cluster with `args` then `more`.
fn kubectl_run(args: &[&str], more: &[String]) -> std::process::Output {
    std::process::Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(common::cluster::kubeconfig())
        .args(args)
        .args(more)
        .output()
        .unwrap()
}

fn dynamic_api(client: &Client, ns: &str, doc: &Value) -> Api<DynamicObject> {
    let api_version = doc["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = doc["kind"].as_str().unwrap();
    let plural = match kind {
        "ServiceEntry" => "serviceentries".to_string(),
        "AuthPolicy" => "authpolicies".to_string(),
        other => format!("{}s", other.to_lowercase()),
    };
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural);
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// Paths of `wanted` that `got` lacks or holds with another value.
fn missing(wanted: &Value, got: &Value, path: &str, out: &mut Vec<String>) {
    match (wanted, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                missing(v, g.get(k).unwrap_or(&Value::Null), &format!("{path}.{k}"), out);
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => {
            for (i, (a, b)) in w.iter().zip(g).enumerate() {
                missing(a, b, &format!("{path}[{i}]"), out);
            }
        }
        (w, g) if w == g => {}
        _ => out.push(format!("{path}: wanted {wanted}, got {got}")),
    }
}

#[test]
fn the_comparison_notices_a_pruned_or_changed_field() {
    let wanted = json!({"spec": {"a": [1, {"b": "x"}], "c": true}});
    let mut out = Vec::new();
    missing(&wanted, &json!({"spec": {"a": [1, {"b": "x", "extra": 1}], "c": true}}), "", &mut out);
    assert!(out.is_empty(), "{out:?}");
    missing(&wanted, &json!({"spec": {"a": [1, {}], "c": false}}), "", &mut out);
    assert_eq!(out.len(), 2, "{out:?}");
}

#[test]
fn the_seed_text_yields_its_manifests_and_patch() {
    let docs = seed_manifests(SEED_HOST);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["HTTPRoute", "Service", "ServiceEntry", "MCPServerRegistration", "AuthPolicy", "ClusterRoleBinding"]
    );
    assert_eq!(docs[0]["spec"]["hostnames"], json!([SEED_HOST]));
    let patch = seed_gateway_patch(SEED_HOST);
    assert_eq!(patch[0]["op"], "add");
    assert_eq!(patch[0]["path"], "/spec/listeners/-");
    assert_eq!(patch[0]["value"]["hostname"], SEED_HOST);
}

async fn no_controllers(_ctx: Arc<Context>, _scope: WatchScope, stop: Stop) {
    stop.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_004_manifests_are_accepted_by_the_third_party_crds_on_a_real_cluster() {
    gated(in_scratch_namespace("apiary-crds004", no_controllers, accepted)).await;
}

async fn accepted(client: Client, ns: String, _metrics: Arc<Metrics>) {
    let crds = apply_foreign_crds(&client).await;
    for want in [
        "gateways.gateway.networking.k8s.io",
        "httproutes.gateway.networking.k8s.io",
        "gatewayclasses.gateway.networking.k8s.io",
        "serviceentries.networking.istio.io",
        "authpolicies.kuadrant.io",
    ] {
        assert!(crds.iter().any(|c| c == want), "{want} not among {crds:?}");
    }

    // The seed's patch adds a listener to Gateway mcp-gateway (here in the scratch namespace).
    let gateway = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "mcp-gateway", "namespace": ns},
        "spec": {"gatewayClassName": "apiary", "listeners": [{"name": "mcp", "port": 8080, "protocol": "HTTP"}]}});
    apply(&client, &ns, &gateway).await;
    let gateways = dynamic_api(&client, &ns, &gateway);
    // With kubectl, as the seed runs it.
    let out = kubectl_run(
        &["patch", "gateway", "mcp-gateway", "-n", &ns, "--type", "json", "-p"],
        &[seed_gateway_patch(SEED_HOST).to_string()],
    );
    assert!(out.status.success(), "kubectl patch: {}", String::from_utf8_lossy(&out.stderr));
    let got = serde_json::to_value(gateways.get("mcp-gateway").await.unwrap()).unwrap();
    let listeners = got["spec"]["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 2);
    assert_eq!(listeners[1]["hostname"], SEED_HOST);
    assert_eq!(listeners[1]["allowedRoutes"]["namespaces"]["from"], "All");

    // Every namespaced manifest of the seed, as written (only moved to the scratch namespace).
    for mut doc in seed_manifests(SEED_HOST).into_iter().filter(|d| d["kind"] != "ClusterRoleBinding") {
        doc["metadata"]["namespace"] = json!(ns);
        apply(&client, &ns, &doc).await;
        let name = doc["metadata"]["name"].as_str().unwrap();
        let stored = serde_json::to_value(dynamic_api(&client, &ns, &doc).get(name).await.unwrap()).unwrap();
        let mut lost = Vec::new();
        missing(&doc["spec"], &stored["spec"], &format!("{} {name} spec", doc["kind"]), &mut lost);
        assert!(lost.is_empty(), "the apiserver pruned or changed: {lost:#?}");
    }
}

async fn controllers(ctx: Arc<Context>, scope: WatchScope, stop: Stop) {
    registration::run(ctx, scope, stop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_follows_its_route_on_a_real_cluster() {
    gated(in_scratch_namespace("apiary-reg", controllers, follows)).await;
}

/// The `Ready` condition's (status, reason) and `discoveredTools` of registration `name`.
async fn ready(regs: &Api<MCPServerRegistration>, name: &str) -> Option<(String, String, Option<i32>)> {
    let s = regs.get(name).await.ok()?.status?;
    let c = s.conditions?.into_iter().find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason, s.discovered_tools))
}

async fn wait_ready(regs: &Api<MCPServerRegistration>, name: &str, status: &str, reason: &str) -> Option<i32> {
    eventually(&format!("{name} Ready={status} {reason}"), || async {
        let (s, r, tools) = ready(regs, name).await?;
        (s == status && r == reason).then_some(tools)
    })
    .await
}

async fn follows(client: Client, ns: String, _metrics: Arc<Metrics>) {
    apply_foreign_crds(&client).await;
    // The seed's kubernetes-mcp-server on this host is the fixture server here.
    let fixture = apiary_testkit::http_fixture::start(&[]).await;
    let port = fixture.url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().to_string();
    let direct = McpClient::connect(&fixture.url, ConnectOptions::default()).await.unwrap();
    let expected = direct.list_tools().await.unwrap().len();
    direct.close().await.unwrap();
    assert!(expected > 0);

    // The seed's route, ExternalName Service and registration, the host being this machine.
    let docs: Vec<Value> = seed_manifests("localhost")
        .into_iter()
        .filter(|d| ["HTTPRoute", "Service", "MCPServerRegistration"].contains(&d["kind"].as_str().unwrap()))
        .map(|d| serde_json::from_str(&d.to_string().replace("9999", &port)).unwrap())
        .collect();
    for doc in &docs {
        apply(&client, &ns, doc).await;
    }
    let route = docs.iter().find(|d| d["kind"] == "HTTPRoute").unwrap().clone();
    let regs: Api<MCPServerRegistration> = Api::namespaced(client.clone(), &ns);
    let tools = wait_ready(&regs, "kubernetes-mcp-server", "True", "ToolsDiscovered").await;
    assert_eq!(tools, Some(i32::try_from(expected).unwrap()));
    let reg = regs.get("kubernetes-mcp-server").await.unwrap();
    let message = &reg.status.unwrap().conditions.unwrap()[0].message;
    assert!(message.contains(&format!("http://localhost:{port}/mcp")) && message.contains("kube_<tool>"), "{message}");

    // kubectl shows the printer columns (Path is the CRD's default).
    let out = kubectl_run(&["get", "mcpserverregistrations", "-n", &ns], &[]);
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(lines[0], ["NAME", "PREFIX", "TARGET", "PATH", "READY", "TOOLS", "AGE"], "{table}");
    let row = &lines[1];
    assert_eq!(&row[..6], ["kubernetes-mcp-server", "kube_", "kubernetes-mcp", "/mcp", "True", &expected.to_string()]);

    // The route goes: RouteNotFound, no tools; it comes back: Ready again.
    let routes = dynamic_api(&client, &ns, &route);
    routes.delete("kubernetes-mcp", &DeleteParams::default()).await.unwrap();
    let tools = wait_ready(&regs, "kubernetes-mcp-server", "False", "RouteNotFound").await;
    assert_eq!(tools, None);
    apply(&client, &ns, &route).await;
    let tools = wait_ready(&regs, "kubernetes-mcp-server", "True", "ToolsDiscovered").await;
    assert_eq!(tools, Some(i32::try_from(expected).unwrap()));

    // A credential that is not there, then is: the token goes along as a bearer.
    let with_cred = json!({"apiVersion": "mcp.kuadrant.io/v1", "kind": "MCPServerRegistration",
        "metadata": {"name": "with-cred", "namespace": ns},
        "spec": {"toolPrefix": "c_", "targetRef": {"name": "kubernetes-mcp"}, "path": "/mcp",
            "credentialRef": {"name": "cred"}}});
    apply(&client, &ns, &with_cred).await;
    wait_ready(&regs, "with-cred", "False", "CredentialNotFound").await;
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "cred"}, "stringData": {"token": "t0ken"}})).unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns).create(&PostParams::default(), &secret).await.unwrap();
    wait_ready(&regs, "with-cred", "True", "ToolsDiscovered").await;

    // A route to a Service nobody listens behind, and one to no Service at all.
    drop(fixture);
    let dead = json!({"apiVersion": "mcp.kuadrant.io/v1", "kind": "MCPServerRegistration",
        "metadata": {"name": "dead", "namespace": ns},
        "spec": {"prefix": "d_", "targetRef": {"name": "kubernetes-mcp"}}});
    apply(&client, &ns, &dead).await;
    wait_ready(&regs, "dead", "False", "Unreachable").await;
    let mut orphan_route = route.clone();
    orphan_route["metadata"]["name"] = json!("orphan");
    orphan_route["spec"]["rules"][0]["backendRefs"][0]["name"] = json!("no-such-service");
    apply(&client, &ns, &orphan_route).await;
    let orphan = json!({"apiVersion": "mcp.kuadrant.io/v1", "kind": "MCPServerRegistration",
        "metadata": {"name": "orphan", "namespace": ns},
        "spec": {"prefix": "o_", "targetRef": {"name": "orphan"}}});
    apply(&client, &ns, &orphan).await;
    wait_ready(&regs, "orphan", "False", "BackendNotFound").await;
}
