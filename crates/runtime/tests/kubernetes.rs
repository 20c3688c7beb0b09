//! The Kubernetes runtime against a real cluster: the fixture server image
//! (`docker.io/mcp/fetch:latest`, `apiary-testkit-server --stdio`) run as a StatefulSet,
//! attached to, and driven through the real proxy by the real MCP client.
//!
//! Needs the test cluster and the images:
//!
//! ```sh
//! export KUBECONFIG=$(cargo xtask cluster up)
//! cargo xtask image --push
//! APIARY_CLUSTER_TESTS=1 cargo test -p apiary-runtime --features kubernetes --test kubernetes
//! ```
//!
//! Without `APIARY_CLUSTER_TESTS` every test returns at once and says it was skipped.
#![cfg(feature = "kubernetes")]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use apiary_config::{RunConfig, Source, StdioMode};
use apiary_proxy::UpstreamState;
use apiary_runtime::kubernetes::{KubeError, StatefulSetLauncher};
use apiary_transport::client::{ConnectOptions, McpClient};
use apiary_transport::launch::Launch;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, LogParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::time::timeout;

const FETCH_IMAGE: &str = "docker.io/mcp/fetch:latest";
const LIMIT: Duration = Duration::from_secs(120);

/// A namespace of the test's own, deleted (without waiting) when dropped.
struct TestNamespace {
    client: Client,
    name: String,
}

impl TestNamespace {
    async fn create(client: &Client, tag: &str) -> Self {
        let name = format!("apiary-rt-{tag}-{}", std::process::id());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        namespaces.create(&PostParams::default(), &ns).await.unwrap();
        TestNamespace { client: client.clone(), name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let client = self.client.clone();
        let name = self.name.clone();
        // Drop cannot await; a blocking helper thread with its own runtime deletes it.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let namespaces: Api<Namespace> = Api::all(client);
                let _ = timeout(Duration::from_secs(10), namespaces.delete(&name, &DeleteParams::default())).await;
            });
        })
        .join();
    }
}

/// The cluster client, or `None` (and a note on stderr) when cluster tests are not enabled.
async fn cluster() -> Option<Client> {
    if std::env::var_os("APIARY_CLUSTER_TESTS").is_none() {
        eprintln!(
            "skipped: set APIARY_CLUSTER_TESTS=1 with KUBECONFIG=$(cargo xtask cluster up) and the images pushed by `cargo xtask image --push`"
        );
        return None;
    }
    Some(Client::try_default().await.expect("APIARY_CLUSTER_TESTS is set, so KUBECONFIG must reach a cluster"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixture_image_serves_tools_through_the_proxy_from_a_statefulset() {
    let Some(client) = cluster().await else { return };
    let ns = TestNamespace::create(&client, "proxy").await;
    let launcher = StatefulSetLauncher::new(client.clone(), &ns.name, "mcp-fetch", FETCH_IMAGE).ready_timeout(LIMIT);
    let config =
        RunConfig::builder("mcp-fetch", Source::image(FETCH_IMAGE)).stdio_mode(StdioMode::Shared).build().unwrap();
    let proxy = apiary_proxy::start(config, Some(Arc::new(launcher))).await.unwrap();

    let client_mcp =
        timeout(LIMIT, McpClient::connect(&proxy.url(), ConnectOptions::default())).await.unwrap().unwrap();
    let tools = timeout(LIMIT, client_mcp.list_tools()).await.unwrap().unwrap();
    let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"echo") && names.contains(&"test_simple_text"), "{names:?}");
    for i in 0..20 {
        let text = format!("hello from the pod {i}");
        let out = timeout(LIMIT, client_mcp.call_tool("echo", json!({"text": text}))).await.unwrap().unwrap();
        assert_eq!(out["content"][0]["text"], text, "{out}");
    }
    let simple = timeout(LIMIT, client_mcp.call_tool("test_simple_text", json!({}))).await.unwrap().unwrap();
    assert_eq!(simple["content"][0]["type"], "text", "{simple}");

    // What was applied: names.md §3's MCP pod.
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns.name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let pod = pods.get("mcp-fetch-0").await.unwrap();
    let labels = pod.metadata.labels.clone().unwrap();
    for (k, v) in [
        ("app.kubernetes.io/name", "mcpserver"),
        ("app.kubernetes.io/instance", "mcp-fetch"),
        ("toolhive", "true"),
        ("toolhive-name", "mcp-fetch"),
        ("app", "mcp-fetch"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "label {k}");
    }
    let container = &pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.name, "mcp");
    // The apiserver omits `false`, so absent counts as false.
    assert_eq!(
        (container.stdin, container.stdin_once.unwrap_or(false), container.tty.unwrap_or(false)),
        (Some(true), false, false)
    );
    let env: Vec<_> = container.env.iter().flatten().map(|e| (e.name.as_str(), e.value.as_deref())).collect();
    assert!(env.is_empty(), "a bare launcher sets no variables: {env:?}");
    let uid = pod.metadata.uid.clone();

    client_mcp.close().await.unwrap();
    timeout(LIMIT, proxy.shutdown()).await.unwrap();
    // Detaching leaves the server where it is: the StatefulSet and the very same pod.
    assert!(sets.get_opt("mcp-fetch").await.unwrap().is_some(), "the StatefulSet was deleted");
    let after = pods.get("mcp-fetch-0").await.unwrap();
    assert_eq!(after.metadata.uid, uid, "the pod was replaced");
    assert!(after.metadata.deletion_timestamp.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exited_resolves_when_the_pod_goes_away_and_kill_only_detaches() {
    let Some(client) = cluster().await else { return };
    let ns = TestNamespace::create(&client, "exit").await;
    let launcher = StatefulSetLauncher::new(client.clone(), &ns.name, "srv", FETCH_IMAGE)
        .env("MCP_TRANSPORT", "stdio")
        .ready_timeout(LIMIT);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);

    // kill detaches: exited resolves, the pod keeps running.
    let child = timeout(LIMIT, launcher.launch()).await.unwrap().unwrap();
    let uid = pods.get("srv-0").await.unwrap().metadata.uid;
    child.kill.send(()).unwrap();
    let reason = timeout(LIMIT, child.exited).await.unwrap().unwrap();
    assert!(reason.to_string().contains("detached"), "{reason}");
    let pod = pods.get("srv-0").await.unwrap();
    assert_eq!(pod.metadata.uid, uid);
    assert!(pod.metadata.deletion_timestamp.is_none());

    // Launching again applies the same spec: the same pod, attached anew.
    let child = timeout(LIMIT, launcher.launch()).await.unwrap().unwrap();
    assert_eq!(pods.get("srv-0").await.unwrap().metadata.uid, uid, "an unchanged spec must not restart the pod");

    // The pod goes away under the attach: exited says so.
    pods.delete("srv-0", &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() }).await.unwrap();
    let reason = timeout(LIMIT, child.exited).await.unwrap().unwrap();
    let text = reason.to_string();
    assert!(text.contains("srv-0"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_was_never_pushed_fails_the_launch_with_the_reason() {
    let Some(client) = cluster().await else { return };
    let ns = TestNamespace::create(&client, "badimg").await;
    let launcher =
        StatefulSetLauncher::new(client.clone(), &ns.name, "nope", "docker.io/mcp/apiary-never-pushed:latest")
            .ready_timeout(LIMIT);
    let err = match timeout(LIMIT, launcher.launch()).await.unwrap() {
        Ok(_) => panic!("a missing image launched"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("nope-0") && (err.contains("ErrImagePull") || err.contains("ImagePullBackOff")), "{err}");
}

#[tokio::test]
async fn only_image_configs_run_as_pods() {
    let Some(client) = cluster().await else { return };
    let npx = RunConfig::builder("t", Source::npx("pkg")).build().unwrap();
    let err = StatefulSetLauncher::for_run_config(client.clone(), "default", &npx).unwrap_err();
    assert!(matches!(err, KubeError::NotAnImage("package")), "{err}");
    let image = RunConfig::builder("t", Source::image(FETCH_IMAGE)).args(["a"]).env("K", "v").build().unwrap();
    let launcher = StatefulSetLauncher::for_run_config(client, "default", &image).unwrap();
    assert_eq!(launcher.spec().args, ["a"]);
    assert_eq!(launcher.spec().env, [("MCP_TRANSPORT".to_string(), "stdio".to_string()), ("K".into(), "v".into())]);
}

/// A local listener whose every connection is port-forwarded to `pod:port` through the
/// apiserver (pod IPs are not reachable from the host).
/// The documents of a manifest under `deploy/kubernetes/` (seed 003's files).
fn deploy_docs(file: &str) -> Vec<serde_json::Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_multiple(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Creates one manifest document in `ns`, by kind.
async fn create_in(client: &Client, ns: &str, doc: serde_json::Value) {
    use k8s_openapi::api::core::v1::{Service, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let post = PostParams::default();
    match doc["kind"].as_str().unwrap() {
        "ServiceAccount" => drop(create::<ServiceAccount>(client, ns, doc, &post).await),
        "Role" => drop(create::<Role>(client, ns, doc, &post).await),
        "RoleBinding" => drop(create::<RoleBinding>(client, ns, doc, &post).await),
        "StatefulSet" => drop(create::<StatefulSet>(client, ns, doc, &post).await),
        "Service" => drop(create::<Service>(client, ns, doc, &post).await),
        other => panic!("deploy/kubernetes has a {other} this test does not create"),
    }
}

async fn create<K>(client: &Client, ns: &str, doc: serde_json::Value, post: &PostParams) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(doc).unwrap();
    Api::<K>::namespaced(client.clone(), ns).create(post, &object).await.unwrap()
}

/// Seed 003's namespace from `deploy/kubernetes/namespace.yaml`, created fresh (an earlier run's
/// is deleted first) and deleted, without waiting, when the guard drops.
async fn seed_namespace(client: &Client) -> TestNamespace {
    let doc = deploy_docs("namespace.yaml").remove(0);
    let ns: Namespace = serde_json::from_value(doc).unwrap();
    let name = ns.metadata.name.clone().unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + LIMIT;
    let _ = namespaces.delete(&name, &DeleteParams::default()).await;
    while namespaces.get_opt(&name).await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "namespace {name} from an earlier run is not going away");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
    TestNamespace { client: client.clone(), name }
}

async fn forward(pods: Api<Pod>, pod: &str, port: u16) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pod = pod.to_owned();
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let pods = pods.clone();
            let pod = pod.clone();
            tokio::spawn(async move {
                let Ok(mut forwarder) = pods.portforward(&pod, &[port]).await else { return };
                let Some(mut upstream) = forwarder.take_stream(port) else { return };
                let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                drop(upstream);
                let _ = timeout(Duration::from_secs(5), forwarder.join()).await;
            });
        }
    });
    (addr, task)
}

/// Seed 003: Apiary's own image (`apiary:dev`, pushed by `cargo xtask image --push`) in a
/// StatefulSet with exactly the seed's RBAC, `run --foreground=true --port=8080 --name=mcp-fetch
/// docker.io/mcp/fetch`, picks the Kubernetes runtime from `KUBERNETES_SERVICE_HOST`, creates
/// StatefulSet `mcp-fetch` and serves its tools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_003_apiary_in_a_pod_runs_mcp_fetch_as_a_statefulset() {
    let Some(client) = cluster().await else { return };
    // The checked-in manifests, applied as the seed applies its own: the namespace, then RBAC
    // and the workload into it. The RoleBinding names `toolhive-deployment`, so that is the
    // namespace; it is deleted first in case an earlier run was cut short.
    let ns = seed_namespace(&client).await;
    let n = ns.name.as_str();
    for file in ["rbac.yaml", "thv.yaml"] {
        for doc in deploy_docs(file) {
            create_in(&client, n, doc).await;
        }
    }
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), n);

    let pods: Api<Pod> = Api::namespaced(client.clone(), n);
    let (addr, forwarder) = forward(pods.clone(), "toolhive-0", 8080).await;
    let url = format!("http://{addr}/mcp");
    // Bounded: the pods start, Apiary applies mcp-fetch and attaches, then the proxy answers.
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mcp = loop {
        match timeout(Duration::from_secs(10), McpClient::connect(&url, ConnectOptions::default())).await {
            Ok(Ok(c)) => break c,
            other => {
                if tokio::time::Instant::now() > deadline {
                    let logs = pods.logs("toolhive-0", &LogParams::default()).await.unwrap_or_default();
                    panic!("the proxy in toolhive-0 never answered: {other:?}\n{logs}");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let tools = timeout(LIMIT, mcp.list_tools()).await.unwrap().unwrap();
    assert!(tools.iter().any(|t| t["name"] == "echo"), "{tools:?}");
    let out = timeout(LIMIT, mcp.call_tool("echo", json!({"text": "seed 003"}))).await.unwrap().unwrap();
    assert_eq!(out["content"][0]["text"], "seed 003");

    // Apiary made the StatefulSet the seed lists, in its own namespace, with the MCP pod's labels.
    let fetch = sets.get("mcp-fetch").await.unwrap();
    let labels = fetch.spec.unwrap().template.metadata.unwrap().labels.unwrap();
    assert_eq!(labels.get("app.kubernetes.io/instance").map(String::as_str), Some("mcp-fetch"));
    assert_eq!(labels.get("app.kubernetes.io/name").map(String::as_str), Some("mcpserver"));
    let _ = mcp.close().await;
    forwarder.abort();
}

/// The pod dies under the proxy: the proxy's restart launches again, the StatefulSet brings a
/// new pod, and the next client is served by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_recovers_when_the_mcp_pod_is_replaced() {
    let Some(client) = cluster().await else { return };
    let ns = TestNamespace::create(&client, "recover").await;
    let launcher = StatefulSetLauncher::new(client.clone(), &ns.name, "mcp-fetch", FETCH_IMAGE).ready_timeout(LIMIT);
    let config =
        RunConfig::builder("mcp-fetch", Source::image(FETCH_IMAGE)).stdio_mode(StdioMode::Shared).build().unwrap();
    let proxy = apiary_proxy::start(config, Some(Arc::new(launcher))).await.unwrap();
    let first = timeout(LIMIT, McpClient::connect(&proxy.url(), ConnectOptions::default())).await.unwrap().unwrap();
    let pid_before = timeout(LIMIT, first.call_tool("pid", json!({}))).await.unwrap().unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let uid = pods.get("mcp-fetch-0").await.unwrap().metadata.uid;
    pods.delete("mcp-fetch-0", &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() })
        .await
        .unwrap();

    // The attach ends with the pod; the proxy launches again, which waits for the new pod.
    let mut status = proxy.status();
    timeout(LIMIT, status.wait_for(|s| s.restarts >= 1 && s.state == UpstreamState::Running))
        .await
        .expect("the proxy restarted its child")
        .unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let answer = loop {
        let attempt = async {
            let c = McpClient::connect(&proxy.url(), ConnectOptions::default()).await?;
            c.call_tool("echo", json!({"text": "after the restart"})).await
        };
        match timeout(Duration::from_secs(30), attempt).await {
            Ok(Ok(v)) => break v,
            other => {
                assert!(tokio::time::Instant::now() < deadline, "never served again: {other:?}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    assert_eq!(answer["content"][0]["text"], "after the restart");
    let new_uid = pods.get("mcp-fetch-0").await.unwrap().metadata.uid;
    assert_ne!(new_uid, uid, "the answer came from the deleted pod");
    assert_eq!(pid_before["isError"], false);
    drop(status);
    timeout(LIMIT, proxy.shutdown()).await.unwrap();
}
