//! `apiary gateway` on the REAL test cluster: the Gateway API status it writes, and the chart
//! running it in the cluster (`gateway.enabled`).
//!
//! - `the_gateway_writes_gateway_and_route_status`: the gateway's watch loop
//!   (`apiary_operator::gateway::run`, what `apiary gateway` runs) against a scratch namespace
//!   writes the Gateway's listener and Gateway conditions and each HTTPRoute's `parents` entry,
//!   follows a change of the Gateway, keeps another controller's entry, and leaves a Gateway of
//!   another class alone.
//! - `the_chart_runs_the_gateway_in_the_cluster`: the chart installed with `gateway.enabled=true`
//!   and `gateway.gateway.create=true` (operator scaled to zero, so it does not compete with
//!   other tests' operators) into its own namespace, making the Gateway in another; an
//!   HTTPRoute and an MCPServerRegistration point at an in-cluster fixture MCP server; an MCP client through `kubectl port-forward` to the gateway's Service
//!   lists the prefixed tools and calls one (the server sees `x-mcp-servername`); the Gateway
//!   and the route get their conditions from the in-cluster gateway.
//!
//! Needs `cargo xtask cluster up` and `cargo xtask image --push` (the Apiary image as
//! `ghcr.io/apiary/apiary:latest`, the fixture as `ghcr.io/stackloklabs/gofetch/server:latest`;
//! `APIARY_GATEWAY_TEST_IMAGE` / `APIARY_GATEWAY_TEST_FIXTURE_IMAGE` name others). Runs only
//! with `APIARY_CLUSTER_TESTS` set. Its namespaces, GatewayClasses and release are its own
//! (`apiary-gw*`), removed at the end, also on failure.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use apiary_operator::gateway::{self, Snapshot};
use apiary_operator::registration::route::Key;
use apiary_transport::client::{ConnectOptions, McpClient};
use common::cluster::{apply, apply_foreign_crds, client, eventually, gated, kubeconfig, kubectl, workspace};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::sync::watch;

const CONTROLLER: &str = "apiary.dev/gateway";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", kind), plural)
}

fn gateways(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource("Gateway", "gateways"))
}

fn routes(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource("HTTPRoute", "httproutes"))
}

fn classes(client: &Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &resource("GatewayClass", "gatewayclasses"))
}

/// `(status, reason)` of condition `type_` in `conditions`.
fn condition(conditions: &Value, type_: &str) -> Option<(String, String)> {
    let c = conditions.as_array()?.iter().find(|c| c["type"] == type_)?;
    Some((c["status"].as_str()?.to_owned(), c["reason"].as_str()?.to_owned()))
}

fn is(conditions: &Value, type_: &str, status: &str, reason: &str) -> bool {
    condition(conditions, type_) == Some((status.to_owned(), reason.to_owned()))
}

/// The status of Gateway `name` once `ready` holds for it.
async fn gateway_status(api: &Api<DynamicObject>, name: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    eventually(what, || async {
        let o = api.get(name).await.ok()?;
        let status = o.data.get("status")?.clone();
        ready(&status).then_some(status)
    })
    .await
}

/// Apiary's `parents` entry of route `name` once `ready` holds for it.
async fn our_parent(api: &Api<DynamicObject>, name: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    eventually(what, || async {
        let o = api.get(name).await.ok()?;
        let parents = o.data.get("status")?.get("parents")?.as_array()?.clone();
        let ours = parents.into_iter().find(|p| p["controllerName"] == CONTROLLER)?;
        ready(&ours).then_some(ours)
    })
    .await
}

fn listener<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["listeners"].as_array().unwrap().iter().find(|l| l["name"] == name).unwrap()
}

async fn create_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns).await.unwrap();
}

async fn delete_namespace(client: &Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone()).delete(name, &DeleteParams::default()).await;
}

/// A GatewayClass of `controller`.
async fn create_class(client: &Client, name: &str, controller: &str) {
    let class = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": name}, "spec": {"controllerName": controller}});
    classes(client)
        .patch(name, &PatchParams::apply("apiary-gateway-test").force(), &Patch::Apply(&class))
        .await
        .unwrap();
}

/// A route in `ns` to Gateway `gw` (in `ns`) with `hostnames`, sending `/mcp` to `service`:8080.
fn route(ns: &str, name: &str, gw: &str, hostnames: &[&str], service: &str) -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"parentRefs": [{"name": gw}], "hostnames": hostnames,
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/mcp"}}],
                "backendRefs": [{"name": service, "port": 8080}]}]}})
}

fn service(ns: &str, name: &str, selector: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": selector, "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]}})
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_writes_gateway_and_route_status() {
    gated(async {
        let client = client(&kubeconfig()).await;
        apply_foreign_crds(&client).await;
        apply_registration_crd(&client).await;
        let ns = format!("apiary-gwstatus-{}", std::process::id());
        let class = format!("apiary-gwstatus-{}", std::process::id());
        let foreign_class = format!("{class}-other");
        create_namespace(&client, &ns).await;
        create_class(&client, &class, CONTROLLER).await;
        create_class(&client, &foreign_class, "example.com/other-controller").await;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        // The receiver is held so the loop's snapshots have somewhere to go.
        let (tx, _snapshots) = watch::channel(Snapshot::default());
        let follower = tokio::spawn(gateway::run(
            client.clone(),
            Key { namespace: ns.clone(), name: "gw".into() },
            tx,
            async move {
                let _ = stop_rx.await;
            },
        ));
        let checked = tokio::spawn(status_checks(client.clone(), ns.clone(), class.clone(), foreign_class.clone()));
        let outcome = checked.await;
        let _ = stop_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), follower).await;
        delete_namespace(&client, &ns).await;
        for c in [&class, &foreign_class] {
            let _ = classes(&client).delete(c, &DeleteParams::default()).await;
        }
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    })
    .await;
}

/// The MCPServerRegistration CRD (the gateway watches registrations).
async fn apply_registration_crd(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let path = workspace().join("deploy/crds/mcpserverregistrations.mcp.kuadrant.io.yaml");
    let crd: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd["metadata"]["name"].as_str().unwrap().to_owned();
    // Created when absent only: another test (or Kuadrant) may own it.
    if api.get_opt(&name).await.unwrap().is_none() {
        api.create(&PostParams::default(), &serde_json::from_value(crd).unwrap()).await.unwrap();
    }
}

async fn status_checks(client: Client, ns: String, class: String, foreign_class: String) {
    apply(&client, &ns, &service(&ns, "backend", json!({"app": "nothing"}))).await;
    let gw = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": ns},
        "spec": {"gatewayClassName": class, "listeners": [
            {"name": "mcp", "hostname": "a.example.com", "port": 8080, "protocol": "HTTP",
             "allowedRoutes": {"namespaces": {"from": "All"}}},
            {"name": "raw", "port": 9000, "protocol": "TCP", "allowedRoutes": {"namespaces": {"from": "All"}}}]}});
    apply(&client, &ns, &gw).await;
    apply(&client, &ns, &route(&ns, "good", "gw", &["a.example.com"], "backend")).await;
    apply(&client, &ns, &route(&ns, "elsewhere", "gw", &["b.example.com"], "backend")).await;
    apply(&client, &ns, &route(&ns, "orphan", "gw", &["a.example.com"], "no-such-service")).await;
    // Another implementation's entry on `good`, for the same Gateway: it must stay.
    let routes = routes(&client, &ns);
    let theirs = json!({"controllerName": "example.com/other-controller",
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"},
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "theirs",
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]});
    routes
        .patch_status("good", &PatchParams::default(), &Patch::Merge(&json!({"status": {"parents": [theirs]}})))
        .await
        .unwrap();

    let gateways = gateways(&client, &ns);
    let status = gateway_status(&gateways, "gw", "the Gateway's status from apiary", |s| {
        is(&s["conditions"], "Programmed", "True", "Programmed")
            && s["listeners"].as_array().is_some_and(|l| l.len() == 2)
    })
    .await;
    assert!(is(&status["conditions"], "Accepted", "True", "ListenersNotValid"), "{status:#}");
    let mcp = listener(&status, "mcp");
    for t in ["Accepted", "Programmed", "ResolvedRefs"] {
        assert!(is(&mcp["conditions"], t, "True", t), "{mcp:#}");
    }
    assert_eq!(mcp["attachedRoutes"], 2, "good and orphan (backends do not decide attachment): {mcp:#}");
    assert_eq!(mcp["supportedKinds"], json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]));
    let raw = listener(&status, "raw");
    assert!(is(&raw["conditions"], "Accepted", "False", "UnsupportedProtocol"), "{raw:#}");
    assert!(is(&raw["conditions"], "Programmed", "False", "Invalid"), "{raw:#}");
    assert_eq!(raw["attachedRoutes"], 0);

    let good = our_parent(&routes, "good", "route good's parents entry", |_| true).await;
    assert!(is(&good["conditions"], "Accepted", "True", "Accepted"), "{good:#}");
    assert!(is(&good["conditions"], "ResolvedRefs", "True", "ResolvedRefs"), "{good:#}");
    assert_eq!(good["parentRef"]["name"], "gw");
    let all = routes.get("good").await.unwrap().data["status"]["parents"].clone();
    assert!(
        all.as_array().unwrap().iter().any(|p| p["controllerName"] == "example.com/other-controller"
            && p["conditions"][0]["message"] == "theirs"),
        "the other controller's entry is kept: {all:#}"
    );
    let elsewhere = our_parent(&routes, "elsewhere", "route elsewhere's parents entry", |_| true).await;
    assert!(is(&elsewhere["conditions"], "Accepted", "False", "NoMatchingListenerHostname"), "{elsewhere:#}");
    let orphan = our_parent(&routes, "orphan", "route orphan's parents entry", |_| true).await;
    assert!(is(&orphan["conditions"], "ResolvedRefs", "False", "BackendNotFound"), "{orphan:#}");
    assert!(is(&orphan["conditions"], "Accepted", "True", "Accepted"), "{orphan:#}");
    let ours = classes(&client).get(&class).await.unwrap();
    assert!(is(&ours.data["status"]["conditions"], "Accepted", "True", "Accepted"), "{:#}", ours.data["status"]);
    let theirs = classes(&client).get(&foreign_class).await.unwrap();
    assert!(
        !is(&theirs.data["status"]["conditions"], "Accepted", "True", "Accepted"),
        "another controller's class is not ours to accept: {:#}",
        theirs.data["status"]
    );

    // The Gateway changes (a wildcard hostname, the TCP listener gone): status follows.
    let mut wider = gw.clone();
    wider["spec"]["listeners"] = json!([{"name": "mcp", "hostname": "*.example.com", "port": 8080,
        "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "All"}}}]);
    apply(&client, &ns, &wider).await;
    let status = gateway_status(&gateways, "gw", "the Gateway's status after the change", |s| {
        s["listeners"].as_array().is_some_and(|l| l.len() == 1 && l[0]["attachedRoutes"] == 3)
    })
    .await;
    assert!(is(&status["conditions"], "Accepted", "True", "Accepted"), "{status:#}");
    our_parent(&routes, "elsewhere", "route elsewhere accepted under *.example.com", |p| {
        is(&p["conditions"], "Accepted", "True", "Accepted")
    })
    .await;

    // A Gateway of another implementation's class is not ours to write.
    let foreign = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": ns},
        "spec": {"gatewayClassName": foreign_class, "listeners": [{"name": "other", "port": 8080, "protocol": "HTTP"}]}});
    let before = serde_json::to_value(gateways.get("gw").await.unwrap()).unwrap()["status"].clone();
    apply(&client, &ns, &foreign).await;
    // Two passes of the loop (each change is followed within a second or so).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = serde_json::to_value(gateways.get("gw").await.unwrap()).unwrap()["status"].clone();
    assert_eq!(after["listeners"], before["listeners"], "a foreign class's Gateway is left alone");
    assert!(after["listeners"].as_array().unwrap().iter().all(|l| l["name"] != "other"));
}

/// The chart's `crds/` are the files `cargo xtask crds` fetches, unchanged but for the header.
#[test]
fn the_charts_gateway_api_crds_are_the_fetched_ones() {
    if std::env::var_os("APIARY_CLUSTER_TESTS").is_none() {
        eprintln!("SKIPPED: set APIARY_CLUSTER_TESTS=1 (the CRDs come with the cluster tests' `cargo xtask crds`)");
        return;
    }
    let fetched = common::cluster::foreign_crds_dir();
    let shipped = workspace().join("deploy/helm/apiary-operator/crds");
    let mut compared = 0;
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let body: String = text.lines().skip_while(|l| l.starts_with('#')).map(|l| format!("{l}\n")).collect();
        let source = std::fs::read_to_string(fetched.join(path.file_name().unwrap())).unwrap();
        assert!(body == source, "{} differs from the fetched copy", path.display());
        compared += 1;
    }
    assert_eq!(compared, 3);
}

// ---------------------------------------------------------------------------------------------

const RELEASE: &str = "apiary-gwchart";
/// The gateway's objects for that release.
const GATEWAY_SVC: &str = "apiary-gwchart-toolhive-operator-gateway";
/// Where the chart creates the served Gateway (a namespace it makes).
const GATEWAY_NS: &str = "apiary-gwchart-gw";

fn image(var: &str, default: &str) -> String {
    std::env::var(var).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned())
}

/// The cached helm (`cargo xtask cluster build`).
fn helm_bin() -> PathBuf {
    kubectl().with_file_name("helm")
}

fn helm(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .args(["--kill-after=5", "300"])
        .arg(helm_bin())
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .env("HOME", home)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `kubectl port-forward` to the gateway's Service on a free local port; killed on drop.
struct PortForward {
    child: Child,
    port: u16,
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port_forward(ns: &str, target: &str) -> PortForward {
    let mut child = Command::new(kubectl())
        .args(["--kubeconfig", kubeconfig().to_str().unwrap(), "port-forward", "-n", ns, target])
        .args(["--address", "127.0.0.1", ":8080"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // "Forwarding from 127.0.0.1:41234 -> 8080"
            if let Some(port) = line.strip_prefix("Forwarding from 127.0.0.1:").and_then(|r| r.split(' ').next()) {
                let _ = tx.send(port.parse::<u16>().unwrap());
            }
        }
    });
    let port = rx.recv_timeout(Duration::from_secs(60)).expect("kubectl port-forward did not start");
    PortForward { child, port }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_runs_the_gateway_in_the_cluster() {
    gated(async {
        let client = client(&kubeconfig()).await;
        apply_foreign_crds(&client).await;
        apply_registration_crd(&client).await;
        let ns = RELEASE.to_owned();
        let gateway_ns = GATEWAY_NS.to_owned();
        let class = format!("{RELEASE}-class");
        let home = tempfile::tempdir().unwrap();
        // A previous run's leftovers.
        let _ = helm(home.path(), &["uninstall", RELEASE, "-n", &ns, "--wait", "--ignore-not-found"]);
        for n in [&ns, &gateway_ns] {
            delete_namespace(&client, n).await;
            eventually("the namespaces of a previous run to go", || async {
                Api::<Namespace>::all(client.clone()).get_opt(n).await.ok()?.is_none().then_some(())
            })
            .await;
        }
        let checked = tokio::spawn(chart_checks(client.clone(), ns.clone(), class.clone(), home.path().to_owned()));
        let outcome = checked.await;
        let out = helm(home.path(), &["uninstall", RELEASE, "-n", &ns, "--wait", "--ignore-not-found"]);
        // The chart keeps the Gateway's namespace on uninstall (it may hold the user's objects).
        let kept = Api::<Namespace>::all(client.clone()).get_opt(&gateway_ns).await.unwrap().is_some();
        delete_namespace(&client, &ns).await;
        delete_namespace(&client, &gateway_ns).await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
        assert!(out.status.success(), "helm uninstall: {}", String::from_utf8_lossy(&out.stderr));
        assert!(kept, "the Gateway's namespace is kept on uninstall");
        assert!(classes(&client).get_opt(&class).await.unwrap().is_none(), "the release's GatewayClass goes with it");
    })
    .await;
}

async fn chart_checks(client: Client, ns: String, class: String, home: PathBuf) {
    let gateway_image = image("APIARY_GATEWAY_TEST_IMAGE", "ghcr.io/apiary/apiary:latest");
    let fixture_image = image("APIARY_GATEWAY_TEST_FIXTURE_IMAGE", "ghcr.io/stackloklabs/gofetch/server:latest");
    let chart = workspace().join("deploy/helm/apiary-operator");
    let sets = [
        "gateway.enabled=true".to_owned(),
        format!("gateway.gatewayRef={GATEWAY_NS}/mcp-gateway"),
        "gateway.gateway.create=true".to_owned(),
        format!("gateway.image={gateway_image}"),
        "gateway.imagePullPolicy=Always".to_owned(),
        format!("gateway.gatewayClass.name={class}"),
        // The operator is not under test: no pod, and no cluster-wide grants.
        "operator.replicaCount=0".to_owned(),
        "operator.rbac.scope=namespace".to_owned(),
        format!("operator.rbac.allowedNamespaces={{{ns}}}"),
        // Other tests applied the CRDs without Helm; the Gateway API ones in crds/ exist too
        // and are skipped by Helm.
        "crds.install=false".to_owned(),
    ];
    let mut args = vec!["install", RELEASE, chart.to_str().unwrap(), "-n", &ns, "--create-namespace"];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    let out = helm(&home, &args);
    assert!(
        out.status.success(),
        "helm install: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The fixture MCP server, in the cluster.
    let fixture = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "fixture", "namespace": ns},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "fixture"}},
            "template": {"metadata": {"labels": {"app": "fixture"}},
                "spec": {"containers": [{"name": "mcp", "image": fixture_image, "imagePullPolicy": "Always",
                    "env": [{"name": "MCP_TRANSPORT", "value": "streamable-http"}, {"name": "MCP_PORT", "value": "8080"}],
                    "ports": [{"containerPort": 8080}]}]}}}});
    apply(&client, &ns, &fixture).await;
    apply(&client, &ns, &service(&ns, "fixture", json!({"app": "fixture"}))).await;
    // The chart made Gateway mcp-gateway (listener `mcp`, routes from All) in its own namespace.
    let mut to_gateway = route(&ns, "fixture", "mcp-gateway", &[], "fixture");
    to_gateway["spec"]["parentRefs"][0]["namespace"] = json!(GATEWAY_NS);
    apply(&client, &ns, &to_gateway).await;
    let registration = json!({"apiVersion": "mcp.kuadrant.io/v1alpha1", "kind": "MCPServerRegistration",
        "metadata": {"name": "fixture", "namespace": ns},
        "spec": {"prefix": "fx_", "targetRef": {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "fixture"}}});
    apply(&client, &ns, &registration).await;

    for d in ["fixture", GATEWAY_SVC] {
        let out = Command::new("timeout")
            .args(["180", kubectl().to_str().unwrap(), "--kubeconfig", kubeconfig().to_str().unwrap()])
            .args(["rollout", "status", "-n", &ns, &format!("deployment/{d}"), "--timeout=170s"])
            .output()
            .unwrap();
        assert!(out.status.success(), "deployment {d} not ready: {}", String::from_utf8_lossy(&out.stderr));
    }

    // A real MCP client through the gateway's Service.
    let forward = port_forward(&ns, &format!("svc/{GATEWAY_SVC}"));
    let url = format!("http://127.0.0.1:{}/mcp", forward.port);
    let tools = eventually("the fixture's tools behind fx_ through the gateway", || async {
        let c = McpClient::connect(&url, ConnectOptions::default()).await.ok()?;
        let tools = c.list_tools().await.ok()?;
        let _ = c.close().await;
        let names: Vec<String> = tools.iter().filter_map(|t| t["name"].as_str().map(str::to_owned)).collect();
        names.iter().any(|n| n == "fx_echo").then_some(names)
    })
    .await;
    assert!(tools.iter().all(|n| n.starts_with("fx_")), "every tool is the fixture's, prefixed: {tools:?}");
    let c = McpClient::connect(&url, ConnectOptions::default()).await.unwrap();
    let echoed = c.call_tool("fx_echo", json!({"text": "through the chart's gateway"})).await.unwrap();
    assert_eq!(echoed["content"][0]["text"], "through the chart's gateway", "{echoed}");
    let header = c.call_tool("fx_request_header", json!({"name": "x-mcp-servername"})).await.unwrap();
    assert_eq!(header["content"][0]["text"], format!("{ns}/fixture"), "{header}");
    c.close().await.unwrap();
    drop(forward);

    // The in-cluster gateway wrote the conditions.
    let status =
        gateway_status(&gateways(&client, GATEWAY_NS), "mcp-gateway", "the Gateway's status from the pod", |s| {
            is(&s["conditions"], "Programmed", "True", "Programmed")
        })
        .await;
    assert!(is(&status["conditions"], "Accepted", "True", "Accepted"), "{status:#}");
    assert_eq!(listener(&status, "mcp")["attachedRoutes"], 1, "{status:#}");
    let parent = our_parent(&routes(&client, &ns), "fixture", "the route's parents entry from the pod", |p| {
        is(&p["conditions"], "Accepted", "True", "Accepted")
    })
    .await;
    assert!(is(&parent["conditions"], "ResolvedRefs", "True", "ResolvedRefs"), "{parent:#}");
    // And accepted the chart's GatewayClass (its RBAC allows exactly these writes).
    eventually("the chart's GatewayClass accepted by the pod", || async {
        let c = classes(&client).get(&class).await.ok()?;
        is(&c.data["status"]["conditions"], "Accepted", "True", "Accepted").then_some(())
    })
    .await;
}
