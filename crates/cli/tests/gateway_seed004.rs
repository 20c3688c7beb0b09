//! Use case 1 of seed 004 ("No auth") verbatim through `apiary gateway` on the REAL test cluster
//! (`cargo xtask cluster up`): the real kubernetes-mcp-server v0.0.67 (`cargo xtask test-env`)
//! runs on this host on port 9999 with the cluster's kubeconfig, as the seed's Step 2 runs it;
//! Gateway `mcp-gateway` in `gateway-system` exists as the chart would make it (one listener
//! whose hostname is not the seed's); then the seed's own shell blocks — `kubectl patch gateway`,
//! `kubectl create namespace mcp-test` and `kubectl apply -n mcp-test -f - <<EOF … EOF` — are
//! cut from the vendored seed text and run by bash with `EXTERNAL_HOSTNAME=localhost` (the
//! machine running the server, seen from the gateway on the same host). A fixture server is
//! registered beside it under another prefix through the chart's listener. Then the official
//! Python SDK client and the MCP Inspector CLI list tools through the gateway (`kube_` tools
//! beside `fixture_` ones) and `kube_namespaces_list` answers with the cluster's namespaces.
//! The seed's patch is what admits its route: the listener rules of `apiary gateway`.
//! Runs only with `APIARY_CLUSTER_TESTS` set and `KUBECONFIG`; then a missing tool fails it.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;

use apiary_transport::client::{ConnectOptions, McpClient};
use serde_json::Value;
use support::cluster::{apply, eventually, install_crds, kubectl};
use support::gateway::{Gateway, port_of};
use support::seed004::{
    CHART_HOSTNAME, EXTERNAL_HOSTNAME, SEED_PORT, block, chart_gateway, fixture_registration, inspector_tools,
    python_sdk, run_seed_block, seed_section, start_kubernetes_mcp_server, tool_name,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_004_use_case_1_verbatim_through_the_gateway_with_real_clients() {
    if std::env::var_os("APIARY_CLUSTER_TESTS").is_none() {
        eprintln!("SKIPPED: set APIARY_CLUSTER_TESTS=1 with KUBECONFIG (cargo xtask cluster up)");
        return;
    }
    let seed = seed_section("Use case 1: No auth", "Use case 2:");
    let patch = block(&seed, "kubectl patch gateway mcp-gateway -n gateway-system", Some("]\""));
    let create_ns = block(&seed, "kubectl create namespace mcp-test", None);
    let apply_seed = block(&seed, "kubectl apply -n mcp-test -f - <<EOF", Some("EOF"));
    assert!(apply_seed.contains("$EXTERNAL_HOSTNAME") && patch.contains("$EXTERNAL_HOSTNAME"), "{patch}{apply_seed}");

    install_crds();
    // Step 1, as the chart would: the class, the namespace and the Gateway with one listener.
    // The seed's namespaces are fixed names: a previous run's are waited out.
    let _cleanup = chart_gateway(&["mcp-test", "gateway-system"]);

    // Step 2: the server. Step 3: the seed's blocks as written.
    let scratch = tempfile::tempdir().unwrap();
    let _server = start_kubernetes_mcp_server(&scratch.path().join("kubernetes-mcp-server.log")).await;
    run_seed_block(&patch);
    run_seed_block(&create_ns);
    run_seed_block(&apply_seed);
    let listeners = kubectl(&["get", "gateway", "mcp-gateway", "-n", "gateway-system", "-o", "json"], None);
    let listeners: Value = serde_json::from_str(&listeners).unwrap();
    assert_eq!(listeners["spec"]["listeners"][1]["hostname"], EXTERNAL_HOSTNAME, "the seed's patch: {listeners}");

    let fixture = apiary_testkit::http_fixture::start(&[]).await;
    apply(&fixture_registration(port_of(&fixture.url)));

    let gw = Gateway::start("gateway-system/mcp-gateway").await;
    let url = gw.url.clone();

    // Step 4: once both servers are served, every client sees the same prefixed list.
    let client = McpClient::connect(&url, ConnectOptions::default()).await.unwrap();
    let through: BTreeSet<String> = eventually("kube_ and fixture_ tools through the gateway", || async {
        let tools: BTreeSet<String> = client.list_tools().await.ok()?.iter().map(tool_name).collect();
        (tools.contains("kube_namespaces_list") && tools.contains("fixture_echo")).then_some(tools)
    })
    .await;
    client.close().await.unwrap();
    let direct = inspector_tools(&format!("http://127.0.0.1:{SEED_PORT}/mcp"), None).await;
    assert!(direct.contains("namespaces_list"), "{direct:?}");
    let kube: BTreeSet<String> = through.iter().filter_map(|t| t.strip_prefix("kube_")).map(str::to_owned).collect();
    assert_eq!(kube, direct, "every server tool, each once, behind kube_");
    assert!(through.iter().all(|t| t.starts_with("kube_") || t.starts_with("fixture_")), "{through:?}");

    // (b) The MCP Inspector CLI through the gateway lists the same.
    assert_eq!(inspector_tools(&url, None).await, through, "the Inspector CLI through the gateway");

    // (a) The Python SDK client lists them and calls kube_namespaces_list: the cluster's namespaces.
    let py = python_sdk(&url, "kube_namespaces_list", None).await;
    let py_tools: BTreeSet<String> =
        py["tools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect();
    assert_eq!(py_tools, through, "the Python SDK through the gateway: {py}");
    assert_ne!(py["result"]["isError"], true, "{py}");
    let text = py["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{py}"));
    for ns in ["kube-system", "default", "mcp-test", "gateway-system"] {
        assert!(text.contains(ns), "{ns} missing from kube_namespaces_list: {text}");
    }

    // /status: both served; the seed's registration through the route the seed applied.
    let status = gw.status().await.unwrap();
    let served: Vec<&str> =
        status["servers"].as_array().unwrap().iter().map(|s| s["registration"].as_str().unwrap()).collect();
    assert_eq!(served, ["mcp-test/fixture", "mcp-test/kubernetes-mcp-server"], "{status}");

    // It is the seed's listener that admits the seed's route: without it (the Gateway as the
    // chart made it) the kube_ tools go, and /status says which listener refused and why.
    let remove = r#"[{"op": "test", "path": "/spec/listeners/1/name", "value": "kubernetes-mcp"},
        {"op": "remove", "path": "/spec/listeners/1"}]"#;
    kubectl(&["patch", "gateway", "mcp-gateway", "-n", "gateway-system", "--type", "json", "-p", remove], None);
    let status = eventually("the seed's registration refused once its listener is gone", || async {
        let status = gw.status().await?;
        let refused =
            status["notServed"].as_array()?.iter().find(|s| s["registration"] == "mcp-test/kubernetes-mcp-server")?;
        Some(refused.clone())
    })
    .await;
    assert_eq!(status["reason"], "NoMatchingListenerHostname", "{status}");
    assert!(status["message"].as_str().unwrap().contains(CHART_HOSTNAME), "{status}");
    let client = McpClient::connect(&url, ConnectOptions::default()).await.unwrap();
    let left: BTreeSet<String> = client.list_tools().await.unwrap().iter().map(tool_name).collect();
    assert!(left.contains("fixture_echo") && !left.iter().any(|t| t.starts_with("kube_")), "{left:?}");
    client.close().await.unwrap();
}
