//! `apiary gateway` against the REAL test cluster (`cargo xtask cluster up`): two fixture MCP
//! servers on this host, each behind an ExternalName Service (`localhost`, as seed 004 points at
//! kubernetes-mcp-server on the machine that runs it), an HTTPRoute attached to a test Gateway
//! and an MCPServerRegistration (prefix `kube_`, and toolPrefix `other_`). One `tools/list`
//! through the gateway shows both servers' tools, prefixed; a call reaches its owner with the
//! stripped name and the `x-mcp-*` headers (the fixture's `request_header` tool echoes them),
//! never an incoming `x-mcp-authorized`; a registration whose route attaches to another Gateway
//! is not served and `/status` says why; a registration deleted takes its tools out of the open
//! session's list without a restart. Runs only with `APIARY_CLUSTER_TESTS` set and `KUBECONFIG`.
#![allow(clippy::unwrap_used)]

mod support;

use apiary_transport::client::{ConnectOptions, McpClient};
use serde_json::{Value, json};
use support::cluster::{Cleanup, apply, eventually, install_crds, kubectl};
use support::gateway::{Gateway, Registration, gateway, port_of};

/// A registered server: `localhost:port` behind route `route`, attached to `gateway`
/// (`ns/name`), registration `reg` with `prefix_field: prefix`.
fn server(ns: &str, route: &str, port: u16, gateway: (&str, &str), reg: &str, prefix: (&str, &str)) -> Vec<Value> {
    Registration { namespace: ns, name: reg, route, port, gateway, section: None, hostname: "localhost", prefix }.docs()
}

fn names(tools: &[Value]) -> Vec<String> {
    tools.iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

async fn header(client: &McpClient, tool: &str, name: &str) -> String {
    let result = client.call_tool(tool, json!({"name": name})).await.unwrap();
    result["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{result}")).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_registered_servers_prefixed_routed_and_followed_live() {
    if std::env::var_os("APIARY_CLUSTER_TESTS").is_none() {
        eprintln!("SKIPPED: set APIARY_CLUSTER_TESTS=1 with KUBECONFIG (cargo xtask cluster up)");
        return;
    }
    install_crds();
    let pid = std::process::id();
    let (ns, gw_ns) = (format!("apiary-gw-{pid}"), format!("apiary-gwsys-{pid}"));
    let _cleanup = Cleanup::namespaces(&[&ns, &gw_ns]);
    kubectl(&["create", "namespace", &ns], None);
    kubectl(&["create", "namespace", &gw_ns], None);
    // The Gateway as the chart would make it, and another one.
    apply(&[gateway(&gw_ns, "mcp-gateway", None), gateway(&gw_ns, "elsewhere", None)]);

    let kube = apiary_testkit::http_fixture::start(&[]).await;
    let other = apiary_testkit::http_fixture::start(&[]).await;
    let mut docs = server(
        &ns,
        "kubernetes-mcp",
        port_of(&kube.url),
        (&gw_ns, "mcp-gateway"),
        "kubernetes-mcp-server",
        ("prefix", "kube_"),
    );
    docs.extend(server(
        &ns,
        "other-mcp",
        port_of(&other.url),
        (&gw_ns, "mcp-gateway"),
        "other",
        ("toolPrefix", "other_"),
    ));
    docs.extend(server(&ns, "foreign", port_of(&other.url), (&gw_ns, "elsewhere"), "foreign", ("prefix", "foreign_")));
    apply(&docs);

    let gw = Gateway::start(&format!("{gw_ns}/mcp-gateway")).await;
    let url = gw.url.clone();
    assert!(url.ends_with("/mcp"), "{url}");

    // One session, held open across the registration's removal. An incoming wristband header
    // rides along on every request to the gateway.
    let options =
        ConnectOptions { headers: vec![("x-mcp-authorized".into(), "true".into())], ..ConnectOptions::default() };
    let client = McpClient::connect(&url, options).await.unwrap();
    let listed = eventually("both servers' tools through the gateway", || async {
        let tools = names(&client.list_tools().await.ok()?);
        (tools.contains(&"kube_echo".to_owned()) && tools.contains(&"other_echo".to_owned())).then_some(tools)
    })
    .await;
    assert!(listed.iter().all(|n| n.starts_with("kube_") || n.starts_with("other_")), "{listed:?}");
    assert!(listed.contains(&"kube_request_header".to_owned()), "{listed:?}");

    let echoed = client.call_tool("kube_echo", json!({"text": "through the gateway"})).await.unwrap();
    assert_eq!(echoed["content"][0]["text"], "through the gateway", "{echoed}");
    assert_eq!(header(&client, "kube_request_header", "x-mcp-servername").await, format!("{ns}/kubernetes-mcp"));
    assert_eq!(header(&client, "kube_request_header", "x-mcp-toolname").await, "request_header");
    assert_eq!(header(&client, "kube_request_header", "x-mcp-method").await, "tools/call");
    assert_eq!(header(&client, "other_request_header", "x-mcp-servername").await, format!("{ns}/other-mcp"));
    assert_eq!(header(&client, "kube_request_header", "x-mcp-authorized").await, "no header x-mcp-authorized");

    // /status: two served, the foreign route's registration not, with why.
    let status = gw.status().await.unwrap();
    let served: Vec<&str> =
        status["servers"].as_array().unwrap().iter().map(|s| s["registration"].as_str().unwrap()).collect();
    assert_eq!(served, [format!("{ns}/kubernetes-mcp-server"), format!("{ns}/other")], "{status}");
    let skipped = status["notServed"].as_array().unwrap();
    let foreign =
        skipped.iter().find(|s| s["registration"] == format!("{ns}/foreign")).unwrap_or_else(|| panic!("{status}"));
    assert_eq!(foreign["reason"], "NotAttached", "{status}");

    // The bare POST of names.md's `/mcp` row: JSON back, no session.
    let bare = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","method":"tools/list","id":1}"#)
        .send()
        .await
        .unwrap();
    assert!(bare.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let bare: Value = bare.json().await.unwrap();
    assert!(names(bare["result"]["tools"].as_array().unwrap()).contains(&"other_echo".to_owned()), "{bare}");

    // The other registration goes: the open session's list follows, without a restart.
    kubectl(&["delete", "mcpserverregistrations.mcp.kuadrant.io", "other", "-n", &ns], None);
    eventually("other_ tools gone from the open session", || async {
        let tools = names(&client.list_tools().await.ok()?);
        (tools.contains(&"kube_echo".to_owned()) && !tools.iter().any(|n| n.starts_with("other_"))).then_some(())
    })
    .await;
    assert!(client.call_tool("other_echo", json!({"text": "x"})).await.is_err(), "a removed tool is not routed");
    // And it comes back when registered again.
    apply(&docs[5..6]);
    eventually("other_ tools back", || async {
        names(&client.list_tools().await.ok()?).contains(&"other_echo".to_owned()).then_some(())
    })
    .await;
    client.close().await.unwrap();
}
