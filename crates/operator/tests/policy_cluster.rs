//! The protections an MCPServer and an MCPRemoteProxy ask for, enforced on the REAL cluster:
//! an OIDC issuer runs as a pod (the fixture server's `--oidc` mode, serving the public half of a
//! key this test holds), an MCPOIDCConfig points at it, an inline Cedar policy, an MCPToolConfig
//! and audit are set, and the proxy the operator starts is asked through `kubectl port-forward`:
//! no token → 401, a permitted tool works, a forbidden one → 403, a filtered-out tool is absent
//! from `tools/list` and cannot be called. Then a change to the MCPToolConfig rolls the proxy
//! once, and an MCPRemoteProxy with the same references behaves the same. A second test gives an
//! MCPServer an MCPExternalAuthConfig injecting a header from a Secret and an MCPTelemetryConfig
//! with Prometheus on: the upstream sees the header, `/metrics` answers through the Service's
//! `metrics` port and counts the calls, and a change to the MCPExternalAuthConfig rolls once.
//!
//! Needs `cargo xtask cluster up` and `cargo xtask image --push` (the runner and fixture images
//! built from this checkout). Runs only with `APIARY_CLUSTER_TESTS` set.

#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use apiary_operator::crd::externalauth::MCPExternalAuthConfig;
use apiary_operator::crd::mcpremoteproxy::{MCPRemoteProxy, MCPRemoteProxyPhase};
use apiary_operator::crd::mcpserver::{MCPServer, MCPServerPhase};
use apiary_operator::crd::telemetryconfig::MCPTelemetryConfig;
use apiary_operator::crd::toolconfig::MCPToolConfig;
use apiary_operator::reconcile::{self, Context, Metrics, WatchScope};
use apiary_operator::remoteproxy;
use apiary_testkit::issuer::{SigningKey, now};
use common::cluster::{
    CHECKSUM, Stop, eventually, gated, in_scratch_namespace_with, kubeconfig, kubectl, template_checksum,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

/// The proxy runner image `cargo xtask image --push` publishes.
const RUNNER_IMAGE: &str = "ghcr.io/stacklok/toolhive/proxyrunner:latest";
/// The fixture server's image (also the issuer's, in `--oidc` mode).
const FIXTURE_IMAGE: &str = "ghcr.io/stackloklabs/gofetch/server:latest";

async fn both_controllers(ctx: Arc<Context>, scope: WatchScope, stop: Stop) {
    tokio::join!(reconcile::run(Arc::clone(&ctx), scope.clone(), stop.clone()), remoteproxy::run(ctx, scope, stop));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protections_are_enforced_on_a_real_cluster() {
    gated(in_scratch_namespace_with(RUNNER_IMAGE, "apiary-policy", both_controllers, checks)).await;
}

/// Cedar: `echo` and `pid` may be called; anything else (here `sleep`) is denied.
const POLICIES: [&str; 2] = [
    "permit(principal, action == Action::\"call_tool\", resource == Tool::\"echo\");",
    "permit(principal, action == Action::\"call_tool\", resource == Tool::\"pid\");",
];

/// The protection fields both kinds get, for tokens with audience `audience`.
fn protections(audience: &str) -> Value {
    json!({
        "oidcConfigRef": {"name": "issuer", "audience": audience},
        "authzConfig": {"type": "inline", "inline": {"policies": POLICIES}},
        "toolConfigRef": {"name": "tools"},
        "audit": {"enabled": true},
    })
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

async fn checks(client: Client, ns: String, _metrics: Arc<Metrics>) {
    // The issuer: discovery and the JWKS of a key whose private half stays here.
    let key = SigningKey::generate("cluster-k1");
    let issuer = format!("http://issuer.{ns}.svc.cluster.local:8080");
    let jwks = json!({"keys": [key.jwk()]}).to_string();
    create::<Pod>(
        &client,
        &ns,
        json!({
            "metadata": {"name": "issuer", "labels": {"app": "issuer"}},
            "spec": {"containers": [{
                "name": "issuer",
                "image": FIXTURE_IMAGE,
                "command": ["/usr/local/bin/apiary-testkit-server", "--oidc", "0.0.0.0:8080"],
                "env": [{"name": "APIARY_TESTKIT_ISSUER", "value": issuer},
                        {"name": "APIARY_TESTKIT_JWKS", "value": jwks}],
                "ports": [{"containerPort": 8080}],
            }]}
        }),
    )
    .await;
    create::<Service>(
        &client,
        &ns,
        json!({
            "metadata": {"name": "issuer"},
            "spec": {"selector": {"app": "issuer"}, "ports": [{"port": 8080, "targetPort": 8080}]}
        }),
    )
    .await;

    // A proxy that starts before its issuer answers 503 until its next key fetch (30 s later).
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    eventually("the issuer pod Ready", || async {
        let pod = pods.get("issuer").await.ok()?;
        let ready = pod.status?.conditions?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(())
    })
    .await;
    create::<apiary_operator::crd::oidcconfig::MCPOIDCConfig>(
        &client,
        &ns,
        json!({
            "apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": "MCPOIDCConfig",
            "metadata": {"name": "issuer"},
            "spec": {"type": "inline", "inline": {"issuer": issuer, "insecureAllowHTTP": true}}
        }),
    )
    .await;
    // `sleep` is listed by the filter but denied by Cedar; `pid` is allowed by Cedar but filtered out.
    create::<MCPToolConfig>(
        &client,
        &ns,
        json!({
            "apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": "MCPToolConfig",
            "metadata": {"name": "tools"},
            "spec": {"toolsFilter": ["echo", "sleep"]}
        }),
    )
    .await;

    // 1. An MCPServer with every enforced protection.
    let mut spec = json!({"image": FIXTURE_IMAGE, "transport": "streamable-http", "mcpPort": 8080});
    for (k, v) in protections("guarded").as_object().unwrap() {
        spec[k] = v.clone();
    }
    create::<MCPServer>(
        &client,
        &ns,
        json!({
            "apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": "MCPServer",
            "metadata": {"name": "guarded"}, "spec": spec
        }),
    )
    .await;
    let servers: Api<MCPServer> = Api::namespaced(client.clone(), &ns);
    let status = eventually("MCPServer guarded Running", || async {
        let s = servers.get("guarded").await.ok()?.status?;
        (s.phase == Some(MCPServerPhase::Running)).then_some(s)
    })
    .await;
    assert!(status.oidc_config_hash.is_some() && status.authz_config_hash.is_some(), "{status:?}");
    let tool_hash = status.tool_config_hash.clone().unwrap();

    let forward = PortForward::start(&ns, "service/mcp-guarded-proxy");
    let token = key.sign(
        &json!({"alg": "RS256", "typ": "JWT", "kid": key.kid}),
        &json!({"iss": issuer, "sub": "alice", "aud": "guarded", "iat": now(), "exp": now() + 3600}),
    );
    enforced(&forward, &token, "the MCPServer's proxy").await;
    drop(forward);

    // 2. A change to the MCPToolConfig rolls the proxy once: a new RunConfig checksum on the pod
    // template, a new status hash, and then `pid` is listed.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let before = template_checksum(&deployments.get("guarded").await.unwrap());
    let tools: Api<MCPToolConfig> = Api::namespaced(client.clone(), &ns);
    let patch = json!({"spec": {"toolsFilter": ["echo", "sleep", "pid"]}});
    tools.patch("tools", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let after = eventually("the RunConfig lists pid in the filter", || async {
        let cm = configs.get("guarded-runconfig").await.ok()?;
        let text = cm.data?.get("runconfig.json")?.clone();
        let sum = cm.metadata.annotations?.get(CHECKSUM)?.clone();
        (text.contains("\"pid\"") && sum != before).then_some(sum)
    })
    .await;
    eventually("the pod template carries the new checksum", || async {
        (template_checksum(&deployments.get("guarded").await.ok()?) == after).then_some(())
    })
    .await;
    eventually("status.toolConfigHash changed", || async {
        let s = servers.get("guarded").await.ok()?.status?;
        (s.tool_config_hash.as_deref() != Some(tool_hash.as_str())).then_some(())
    })
    .await;
    let generation = deployments.get("guarded").await.unwrap().metadata.generation;
    eventually("MCPServer guarded Running again", || async {
        let s = servers.get("guarded").await.ok()?.status?;
        (s.phase == Some(MCPServerPhase::Running)).then_some(())
    })
    .await;
    assert_eq!(
        deployments.get("guarded").await.unwrap().metadata.generation,
        generation,
        "one roll per change: nothing more was written to the Deployment"
    );
    // Back to the first filter for the remote proxy.
    let patch = json!({"spec": {"toolsFilter": ["echo", "sleep"]}});
    tools.patch("tools", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();

    // 3. An MCPRemoteProxy with the same references, in front of the server itself (Service
    // `mcp-guarded`, which the runner made): the proxy drops the caller's token before any
    // upstream, so it cannot sit in front of another token-checking proxy.
    let mut spec = json!({
        "remoteURL": format!("http://mcp-guarded.{ns}.svc.cluster.local:8080/mcp"),
        "transport": "streamable-http",
    });
    for (k, v) in protections("remote").as_object().unwrap() {
        spec[k] = v.clone();
    }
    create::<MCPRemoteProxy>(
        &client,
        &ns,
        json!({
            "apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": "MCPRemoteProxy",
            "metadata": {"name": "remote"}, "spec": spec
        }),
    )
    .await;
    let proxies: Api<MCPRemoteProxy> = Api::namespaced(client.clone(), &ns);
    eventually("MCPRemoteProxy remote Ready with the first filter", || async {
        let p = proxies.get("remote").await.ok()?.status?;
        let cm = configs.get("remote-runconfig").await.ok()?;
        let filtered = !cm.data?.get("runconfig.json")?.contains("\"pid\"");
        (p.phase == Some(MCPRemoteProxyPhase::Ready) && filtered).then_some(())
    })
    .await;
    let forward = PortForward::start(&ns, "service/mcp-remote-remote-proxy");
    let token = key.sign(
        &json!({"alg": "RS256", "typ": "JWT", "kid": key.kid}),
        &json!({"iss": issuer, "sub": "bob", "aud": "remote", "iat": now(), "exp": now() + 3600}),
    );
    enforced(&forward, &token, "the MCPRemoteProxy").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outgoing_credentials_and_metrics_on_a_real_cluster() {
    gated(in_scratch_namespace_with(RUNNER_IMAGE, "apiary-outgoing", both_controllers, outgoing)).await;
}

/// An MCPServer with an HTTP upstream, `externalAuthConfigRef` injecting a header from a Secret
/// and `telemetryConfigRef` turning Prometheus on: the fixture upstream sees the header (its
/// `request_header` tool), `/metrics` is reachable through the proxy Service's `metrics` port
/// and counts the calls made, and a change to the MCPExternalAuthConfig rolls the proxy once.
async fn outgoing(client: Client, ns: String, _metrics: Arc<Metrics>) {
    // Not a real credential: made here, so only the Secret can have given it to the proxy.
    let value = format!("k-{}-{}", std::process::id(), now());
    create::<Secret>(&client, &ns, json!({"metadata": {"name": "upstream-key"}, "stringData": {"value": value}})).await;
    let auth = |header: &str| {
        json!({
            "apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": "MCPExternalAuthConfig",
            "metadata": {"name": "upstream"},
            "spec": {"type": "headerInjection", "headerInjection": {
                "headerName": header, "valueSecretRef": {"name": "upstream-key", "key": "value"}}}
        })
    };
    create::<MCPExternalAuthConfig>(&client, &ns, auth("X-Upstream-Key")).await;
    create::<MCPTelemetryConfig>(
        &client,
        &ns,
        json!({
            "apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": "MCPTelemetryConfig",
            "metadata": {"name": "metrics"},
            "spec": {"prometheus": {"enabled": true}}
        }),
    )
    .await;
    create::<MCPServer>(
        &client,
        &ns,
        json!({
            "apiVersion": "toolhive.stacklok.dev/v1beta1", "kind": "MCPServer",
            "metadata": {"name": "outbound"},
            "spec": {"image": FIXTURE_IMAGE, "transport": "streamable-http", "mcpPort": 8080,
                     "externalAuthConfigRef": {"name": "upstream"},
                     "telemetryConfigRef": {"name": "metrics"}}
        }),
    )
    .await;
    let servers: Api<MCPServer> = Api::namespaced(client.clone(), &ns);
    let status = eventually("MCPServer outbound Running", || async {
        let s = servers.get("outbound").await.ok()?.status?;
        (s.phase == Some(MCPServerPhase::Running)).then_some(s)
    })
    .await;
    let auth_hash = status.external_auth_config_hash.clone().unwrap();
    assert!(status.telemetry_config_hash.is_some(), "{status:?}");

    let header_of = |forward: &PortForward, name: &str| {
        let call = format!(
            r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"request_header","arguments":{{"name":"{name}"}}}}}}"#
        );
        // The header's value, or `None` for a tool error (no such header) or a failed call.
        let answer = forward.post(None, &call).filter(|a| a.status == 200)?.json();
        if answer["result"]["isError"] == true {
            return None;
        }
        answer["result"]["content"][0]["text"].as_str().map(str::to_string)
    };
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let forward = PortForward::start(&ns, "service/mcp-outbound-proxy");
    eventually("the outbound proxy lists tools", || async {
        forward.post(None, list).filter(|a| a.status == 200 && a.json()["result"]["tools"].is_array())
    })
    .await;
    // Exactly three calls, each answered with the Secret's value by the upstream.
    for _ in 0..3 {
        assert_eq!(header_of(&forward, "x-upstream-key").as_deref(), Some(value.as_str()));
    }
    let metrics = PortForward::start_to(&ns, "service/mcp-outbound-proxy", 9464);
    let text = eventually("/metrics through the Service's metrics port", || async { metrics.get("/metrics") }).await;
    let calls: f64 = text
        .lines()
        .find(|l| {
            l.starts_with("toolhive_mcp_tool_calls_total{")
                && l.contains(r#"tool="request_header""#)
                && l.contains(r#"status="success""#)
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no request_header count in {text}"));
    assert_eq!(calls, 3.0, "{text}");
    drop((forward, metrics));

    // A change to the MCPExternalAuthConfig rolls the proxy once: a new checksum on the pod
    // template, a new hash, and the header under its new name.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let before = template_checksum(&deployments.get("outbound").await.unwrap());
    let auths: Api<MCPExternalAuthConfig> = Api::namespaced(client.clone(), &ns);
    let patch = json!({"spec": {"headerInjection": {"headerName": "X-Other-Key"}}});
    auths.patch("upstream", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    eventually("the pod template carries a new checksum", || async {
        (template_checksum(&deployments.get("outbound").await.ok()?) != before).then_some(())
    })
    .await;
    // A port-forward sticks to the pod it found first: wait for the old pod to be gone.
    eventually("the new proxy pod alone is ready", || async {
        let d = deployments.get("outbound").await.ok()?;
        let s = d.status?;
        let rolled = s.observed_generation == d.metadata.generation
            && s.replicas == Some(1)
            && s.updated_replicas == Some(1)
            && s.ready_replicas == Some(1)
            && s.terminating_replicas.unwrap_or(0) == 0;
        rolled.then_some(())
    })
    .await;
    eventually("status.externalAuthConfigHash changed and Running again", || async {
        let s = servers.get("outbound").await.ok()?.status?;
        (s.external_auth_config_hash.as_deref() != Some(auth_hash.as_str()) && s.phase == Some(MCPServerPhase::Running))
            .then_some(())
    })
    .await;
    let generation = deployments.get("outbound").await.unwrap().metadata.generation;
    let forward = PortForward::start(&ns, "service/mcp-outbound-proxy");
    let seen = eventually("the upstream sees X-Other-Key", || async {
        header_of(&forward, "x-other-key").filter(|v| *v == value)
    })
    .await;
    assert_eq!(seen, value);
    assert_eq!(header_of(&forward, "x-upstream-key"), None, "the old header is gone (a tool error, no text)");
    assert_eq!(
        deployments.get("outbound").await.unwrap().metadata.generation,
        generation,
        "one roll per change: nothing more was written to the Deployment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_manifests_run_on_a_real_cluster() {
    gated(in_scratch_namespace_with(RUNNER_IMAGE, "apiary-export", both_controllers, exported)).await;
}

/// `apiary export --format k8s` of a local HTTP image workload with a Cedar document, a tool
/// filter and audit: the operator accepts the manifests as they are (MCPServer Running) and the
/// proxy it starts is given the local workload's policy.
async fn exported(client: Client, ns: String, _metrics: Arc<Metrics>) {
    use apiary_config::{RunConfig, Source, Transport};
    use apiary_operator::export::{ServerObject, export};

    let mut local = RunConfig::builder("exported", Source::image(FIXTURE_IMAGE))
        .transport(Transport::StreamableHttp)
        .target_port(8080)
        .build()
        .unwrap();
    local.policy.authz = Some(json!({
        "version": "1.0", "type": "cedarv1",
        "cedar": {"policies": ["permit(principal, action, resource);"], "entities_json": "[]"}
    }));
    local.policy.tools.filter = vec!["echo".into()];
    local.policy.audit = Some(json!({}));
    let manifests = export(&local).unwrap();
    // Applied as `kubectl apply -n NS -f` would: the YAML stream, each document in turn.
    let yaml = manifests.to_yaml().unwrap();
    for doc in yaml.split("---\n") {
        let value: Value = serde_saphyr::from_str(doc).unwrap();
        match value["kind"].as_str().unwrap() {
            "ConfigMap" => create::<ConfigMap>(&client, &ns, value).await,
            "MCPToolConfig" => create::<MCPToolConfig>(&client, &ns, value).await,
            "MCPServer" => create::<MCPServer>(&client, &ns, value).await,
            other => panic!("unexpected kind {other} in\n{yaml}"),
        }
    }
    assert!(matches!(manifests.server, ServerObject::Server(_)));

    let servers: Api<MCPServer> = Api::namespaced(client.clone(), &ns);
    eventually("exported MCPServer Running", || async {
        let s = servers.get("exported").await.ok()?.status?;
        (s.phase == Some(MCPServerPhase::Running)).then_some(())
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = cms.get("exported-runconfig").await.unwrap();
    let text = cm.data.unwrap().into_values().next().unwrap();
    let cluster = RunConfig::from_json_str(&text).unwrap();
    assert_eq!(cluster.policy.authz, local.policy.authz);
    assert_eq!(cluster.policy.tools, local.policy.tools);
    assert!(cluster.policy.audit.is_some());
    assert_eq!(cluster.source, local.source);
}

/// The checks every protected proxy must pass.
async fn enforced(forward: &PortForward, token: &str, what: &str) {
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let call = |tool: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"{tool}","arguments":{{"text":"hi","ms":1}}}}}}"#
        )
    };

    // The pod may still be starting behind the forward: wait for any HTTP answer.
    let anonymous = eventually(&format!("{what}: an answer without a token"), || async {
        forward.post(None, list).filter(|a| a.status != 0)
    })
    .await;
    assert_eq!(anonymous.status, 401, "{what}: {anonymous:?}");
    assert!(anonymous.headers.to_ascii_lowercase().contains("www-authenticate: bearer"), "{what}: {anonymous:?}");
    let wrong = forward.post(Some("not-a-jwt"), list).unwrap();
    assert_eq!(wrong.status, 401, "{what}: {wrong:?}");

    // The server behind the proxy may still be starting: wait for a list.
    let listed = eventually(&format!("{what}: a tools/list answer"), || async {
        forward.post(Some(token), list).filter(|a| a.status == 200 && a.json()["result"]["tools"].is_array())
    })
    .await;
    let names: Vec<String> = listed.json()["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no tools in {listed:?}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&"echo".to_string()), "{what}: {names:?}");
    assert!(!names.contains(&"pid".to_string()), "{what}: the filtered-out tool is listed: {names:?}");
    assert!(!names.contains(&"sleep".to_string()), "{what}: a tool Cedar denies is listed: {names:?}");

    let echo = forward.post(Some(token), &call("echo")).unwrap();
    assert_eq!(echo.status, 200, "{what}: {echo:?}");
    assert_eq!(echo.json()["result"]["content"][0]["text"], "hi", "{what}: {echo:?}");

    let denied = forward.post(Some(token), &call("sleep")).unwrap();
    assert_eq!(denied.status, 403, "{what}: {denied:?}");
    assert!(denied.json()["error"]["code"].is_i64(), "{what}: {denied:?}");

    let hidden = forward.post(Some(token), &call("pid")).unwrap();
    assert_eq!(hidden.json()["error"]["code"], -32602, "{what}: {hidden:?}");
    assert!(hidden.json()["result"].is_null(), "{what}: the hidden tool ran: {hidden:?}");
}

/// One HTTP answer: status (0 when the request failed), raw headers and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    /// The JSON-RPC message of the body (a JSON body, or the first SSE `data:` line).
    fn json(&self) -> Value {
        let text = self.body.trim();
        let json = if text.starts_with('{') {
            text.to_string()
        } else {
            text.lines().find_map(|l| l.strip_prefix("data:")).unwrap_or_default().trim().to_string()
        };
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// `kubectl port-forward` to a Service, stopped when dropped.
struct PortForward {
    port: u16,
    child: Child,
}

impl PortForward {
    fn start(ns: &str, target: &str) -> PortForward {
        PortForward::start_to(ns, target, 8080)
    }

    /// A forward to `remote_port` of `target`.
    fn start_to(ns: &str, target: &str, remote_port: u16) -> PortForward {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("timeout")
            .args(["--kill-after=5", "300"])
            .arg(kubectl())
            .args(["-n", ns, "port-forward", target, &format!("{port}:{remote_port}")])
            .env("KUBECONFIG", kubeconfig())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        PortForward { port, child }
    }

    /// POSTs a JSON-RPC `body` to `/mcp` with `token` as the bearer; `None` when curl failed.
    fn post(&self, token: Option<&str>, body: &str) -> Option<Answer> {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-i", "--max-time", "10", "-X", "POST"])
            .arg(format!("http://127.0.0.1:{}/mcp", self.port))
            .args(["-H", "Content-Type: application/json", "-H", "Accept: application/json, text/event-stream"])
            .args(["-H", "MCP-Protocol-Version: 2025-06-18"]);
        if let Some(t) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        let out = cmd.args(["-d", body]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (headers, body) = text.split_once("\r\n\r\n")?;
        let status = headers.split_whitespace().nth(1)?.parse().ok()?;
        Some(Answer { status, headers: headers.to_string(), body: body.to_string() })
    }

    /// GETs `path`; `None` when curl failed or the answer was not 200.
    fn get(&self, path: &str) -> Option<String> {
        let out = Command::new("curl")
            .args(["-sS", "-f", "--max-time", "10"])
            .arg(format!("http://127.0.0.1:{}{path}", self.port))
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).to_string())
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
