//! Use case 2 of seed 004 ("OIDC auth") verbatim through `apiary gateway` on the REAL test
//! cluster, whose apiserver trusts the pinned Keycloak `https://127.0.0.1:8443/realms/mcp`
//! (docs/cluster-oidc.md). First use case 1's state as its test makes it (the Gateway, the
//! seed's listener patch, namespace `mcp-test`, Service / HTTPRoute / MCPServerRegistration, a
//! fixture server under `fixture_`), with the real kubernetes-mcp-server in passthrough mode
//! behind a recording TCP forwarder on the seed's port 9999. Then use case 2's own blocks, cut
//! from the vendored seed text and run by bash with only its placeholders replaced (the issuer's
//! origin, the gateway's URL, the `mcp-gateway` client's `Basic` credential): Step 1's
//! `kubectl create secret`, Step 2's AuthPolicy, Step 3's ClusterRoleBinding. `apiary gateway
//! --issuer-ca` trusts the cluster CA that signed Keycloak's certificate.
//!
//! Checked: user `mcp` gets a token; with it the Python SDK client and the MCP Inspector CLI
//! list exactly the `kube_` tools of its roles plus the fixture's; `kube_namespaces_list`
//! answers with the cluster's namespaces (the exchanged token reached the apiserver); a tool
//! outside the roles gets the seed's 403; no token and a garbage token get the seed's 401; the
//! forwarder saw only exchanged tokens (audience `mcp-test/kubernetes-mcp`), never the caller's;
//! the AuthPolicy is `Accepted` and `Enforced`.
//! Runs only with `APIARY_CLUSTER_TESTS` set and `KUBECONFIG`; then a missing part fails it.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use apiary_testkit::keycloak::{
    BACKEND_AUDIENCE, GATEWAY_CLIENT, GATEWAY_SECRET, Keycloak, PINNED_ISSUER, USER_CLIENT, decode_claims,
};
use apiary_testkit::kube_oidc::{ClusterOidc, WhoAmI};
use apiary_testkit::kubernetes_mcp::{KubernetesMcpServer, PassthroughOptions};
use apiary_transport::client::{ConnectOptions, McpClient};
use serde_json::{Value, json};
use support::cluster::{apply, eventually, install_crds, kubectl};
use support::gateway::{Gateway, port_of};
use support::seed004::{
    SEED_PORT, block, chart_gateway, fixture_registration, inspector_tools, python_sdk, run_seed_block, seed_section,
    tool_name,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The seed's placeholders.
const SEED_KEYCLOAK: &str = "https://keycloak.example.com";
const SEED_MCP: &str = "https://mcp.example.com";
const SEED_BASIC: &str = "<base64-encoded-client-id:client-secret>";
/// The binding the seed's Step 3 creates.
const BINDING: &str = "oidc-mcp-cluster-admin";
/// Most bytes the forwarder keeps of what the gateway sent the server.
const RECORD_LIMIT: usize = 32 << 20;

/// `text` with `placeholder` replaced, which must be there.
fn put(text: &str, placeholder: &str, value: &str) -> String {
    assert!(text.contains(placeholder), "no {placeholder} in:\n{text}");
    text.replace(placeholder, value)
}

/// A TCP forwarder on 127.0.0.1:[`SEED_PORT`] in front of kubernetes-mcp-server that keeps
/// (up to [`RECORD_LIMIT`]) every byte sent towards the server: proof of which `Authorization`
/// reached it. Stops with the test's runtime; the listener on drop.
struct Recorder {
    sent: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Recorder {
    async fn start(upstream: u16) -> Recorder {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", SEED_PORT))
            .await
            .unwrap_or_else(|e| panic!("port {SEED_PORT} (the seed's) is taken: {e}"));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&sent);
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let record = Arc::clone(&record);
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                    let (mut in_read, mut in_write) = inbound.into_split();
                    let (mut out_read, mut out_write) = outbound.into_split();
                    let back = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut out_read, &mut in_write).await;
                    });
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = in_read.read(&mut buf).await {
                        if n == 0 || out_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                        let mut kept = record.lock().unwrap();
                        let room = RECORD_LIMIT.saturating_sub(kept.len()).min(n);
                        kept.extend_from_slice(&buf[..room]);
                    }
                    let _ = out_write.shutdown().await;
                    let _ = back.await;
                });
            }
        });
        Recorder { sent, task }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).into_owned()
    }

    /// The `Authorization` header values of every request the server got.
    fn authorizations(&self) -> Vec<String> {
        self.text()
            .split("\r\n")
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("authorization").then(|| value.trim().to_owned())
            })
            .collect()
    }
}

async fn list(url: &str, token: Option<&str>) -> BTreeSet<String> {
    let headers = token.map(|t| vec![("Authorization".to_owned(), format!("Bearer {t}"))]).unwrap_or_default();
    let client = McpClient::connect(url, ConnectOptions { headers, ..ConnectOptions::default() }).await.unwrap();
    let tools = client.list_tools().await.unwrap().iter().map(tool_name).collect();
    client.close().await.unwrap();
    tools
}

/// A plain HTTP `tools/call` POST, for the refusals' status, headers and bodies.
async fn raw_call(url: &str, token: Option<&str>, tool: &str) -> reqwest::Response {
    let body = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": tool, "arguments": {}}});
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    req.send().await.unwrap()
}

async fn own_token(keycloak: &Keycloak, user: &str) -> String {
    keycloak.password_token(USER_CLIENT, user, user, "openid").await.unwrap().access_token
}

/// The roles of `user` on the server, as an exchanged token (the one the gateway makes) says.
async fn exchanged_roles(keycloak: &Keycloak, own: &str) -> (String, BTreeSet<String>) {
    let scoped = keycloak
        .exchange(GATEWAY_CLIENT, GATEWAY_SECRET, own, BACKEND_AUDIENCE, "openid profile groups")
        .await
        .unwrap()
        .access_token;
    let claims = decode_claims(&scoped).unwrap();
    let roles = claims["resource_access"][BACKEND_AUDIENCE]["roles"]
        .as_array()
        .unwrap_or_else(|| panic!("no roles on {BACKEND_AUDIENCE}: {claims}"))
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    (scoped, roles)
}

/// Standard base64 with padding (what `base64` the command prints), for the seed's
/// `<base64-encoded-client-id:client-secret>`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn condition<'a>(policy: &'a Value, kind: &str) -> &'a Value {
    policy["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .unwrap_or_else(|| panic!("no {kind} condition: {}", policy["status"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_004_use_case_2_verbatim_through_the_gateway_with_the_clusters_keycloak() {
    if std::env::var_os("APIARY_CLUSTER_TESTS").is_none() {
        eprintln!("SKIPPED: set APIARY_CLUSTER_TESTS=1 with KUBECONFIG (cargo xtask cluster up)");
        return;
    }
    // The seed's blocks. Use case 1's as its test cuts them.
    let uc1 = seed_section("Use case 1: No auth", "Use case 2:");
    let patch = block(&uc1, "kubectl patch gateway mcp-gateway -n gateway-system", Some("]\""));
    let create_ns = block(&uc1, "kubectl create namespace mcp-test", None);
    let apply_uc1 = block(&uc1, "kubectl apply -n mcp-test -f - <<EOF", Some("EOF"));
    let step1 = seed_section("Step 1: Enable auth for tool/list", "Step 2: Create an AuthPolicy");
    let secret = block(
        &step1,
        "kubectl create secret generic token-exchange -n mcp-test",
        Some("  --from-literal=oauth-client-basic-auth=\"Basic <base64-encoded-client-id:client-secret>\""),
    );
    let step2 = seed_section("Step 2: Create an AuthPolicy", "Step 3: Authorize the mcp Keycloak user");
    let policy = block(&step2, "kubectl apply -f -<<EOF", Some("EOF"));
    let step3 = seed_section("Step 3: Authorize the mcp Keycloak user", "Step 4: Try the MCP server");
    let binding = block(&step3, "kubectl apply -f -<<EOF", Some("EOF"));

    // The pinned Keycloak the apiserver trusts (one at a time on the machine).
    let cluster = ClusterOidc::from_env().unwrap();
    assert_eq!(cluster.issuer, PINNED_ISSUER);
    let keycloak = cluster.start_keycloak().await.unwrap();
    let issuer_origin = PINNED_ISSUER.trim_end_matches("/realms/mcp");

    install_crds();
    // Use case 1's state: the Gateway as the chart makes it (fixed names: a previous run's
    // namespaces are waited out), the server, the seed's blocks. The cleanup is declared after
    // the Keycloak, so it is dropped (the seed's binding deleted) before the Keycloak lock is
    // released: the other holder of that binding name (k8s_oidc.rs) also holds the lock.
    let mut cleanup = chart_gateway(&["mcp-test", "gateway-system"]);
    cleanup.cluster_scoped.push(("clusterrolebinding", BINDING.to_owned()));
    let _cleanup = cleanup;
    let server = KubernetesMcpServer::start_passthrough(&cluster, &PassthroughOptions::default()).await.unwrap();
    let recorder = Recorder::start(server.port()).await;
    run_seed_block(&patch);
    run_seed_block(&create_ns);
    run_seed_block(&apply_uc1);
    let fixture = apiary_testkit::http_fixture::start(&[]).await;
    apply(&fixture_registration(port_of(&fixture.url)));

    let scratch = tempfile::tempdir().unwrap();
    let gateway_log = scratch.path().join("gateway.log");
    let issuer_ca = [std::ffi::OsStr::new("--issuer-ca"), cluster.keycloak_tls.ca.as_os_str()];
    let gateway = Gateway::start_with("gateway-system/mcp-gateway", &issuer_ca, Some(&gateway_log)).await;
    let url = gateway.url.clone();
    let origin = url.trim_end_matches("/mcp").to_owned();
    // Use case 1 works: both servers served without auth.
    eventually("kube_ and fixture_ tools through the gateway", || async {
        let tools = list(&url, None).await;
        (tools.contains("kube_namespaces_list") && tools.contains("fixture_echo")).then_some(())
    })
    .await;

    // Use case 2, Steps 1–3, as written but for the placeholders.
    let basic = base64(format!("{GATEWAY_CLIENT}:{GATEWAY_SECRET}").as_bytes());
    run_seed_block(&put(&secret, SEED_BASIC, &basic));
    let policy = put(&put(&policy, SEED_KEYCLOAK, issuer_origin), SEED_MCP, &origin);
    run_seed_block(&policy);
    run_seed_block(&put(&binding, SEED_KEYCLOAK, issuer_origin));

    // The route's policy is enforced, as /status and the policy's conditions say.
    eventually("the AuthPolicy enforced at /status", || async {
        let status = gateway.status().await?;
        let kube = status["servers"].as_array()?.iter().find(|s| s["route"] == "mcp-test/kubernetes-mcp")?.clone();
        (kube["authPolicy"]["state"] == "enforced").then_some(())
    })
    .await;
    let written = eventually("the AuthPolicy's Accepted and Enforced conditions", || async {
        let text = kubectl(&["get", "authpolicy", "kubernetes-mcp-auth-policy", "-n", "mcp-test", "-o", "json"], None);
        let p: Value = serde_json::from_str(&text).unwrap();
        let conditions = p["status"]["conditions"].as_array()?;
        conditions.iter().any(|c| c["type"] == "Enforced" && c["status"] == "True").then_some(p)
    })
    .await;
    for kind in ["Accepted", "Enforced"] {
        assert_eq!(condition(&written, kind)["status"], "True", "{kind}: {}", written["status"]);
    }

    // User mcp gets a token; its roles are those an exchanged token carries.
    let own = own_token(&keycloak, "mcp").await;
    assert_eq!(decode_claims(&own).unwrap()["preferred_username"], "mcp");
    let (scoped, roles) = exchanged_roles(&keycloak, &own).await;
    // The apiserver's authenticator may still be starting (it retries Keycloak every ~10 s).
    let who = eventually("the apiserver to accept an exchanged token", || async {
        match cluster.whoami(&scoped).await.unwrap() {
            WhoAmI::User { username, .. } => Some(username),
            WhoAmI::Unauthorized => None,
        }
    })
    .await;
    assert_eq!(who, cluster.user("mcp"), "the seed's Step 3 user");

    let direct = list(&server.url(), None).await;
    let fixture_tools: BTreeSet<String> =
        list(&fixture.url, None).await.iter().map(|t| format!("fixture_{t}")).collect();
    let expected: BTreeSet<String> =
        direct.intersection(&roles).map(|t| format!("kube_{t}")).chain(fixture_tools.iter().cloned()).collect();
    assert!(expected.contains("kube_namespaces_list") && expected.contains("fixture_echo"), "{expected:?}");

    // Without a token the route lists nothing: only the fixture's tools.
    assert_eq!(list(&url, None).await, fixture_tools, "tools/list without a token");

    // The Python SDK client: exactly the tools of mcp's roles, and kube_namespaces_list answers
    // with the cluster's namespaces (the exchanged token reached the apiserver).
    let py = python_sdk(&url, "kube_namespaces_list", Some(&own)).await;
    let py_tools: BTreeSet<String> =
        py["tools"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect();
    assert_eq!(py_tools, expected, "the Python SDK through the gateway: {py}");
    assert_ne!(py["result"]["isError"], true, "{py}");
    let text = py["result"]["content"][0]["text"].as_str().unwrap_or_else(|| panic!("{py}"));
    for ns in ["kube-system", "default", "mcp-test", "gateway-system"] {
        assert!(text.contains(ns), "{ns} missing from kube_namespaces_list: {text}");
    }

    // The Inspector CLI with the bearer header lists the same.
    assert_eq!(inspector_tools(&url, Some(&own)).await, expected, "the Inspector CLI through the gateway");

    // A served kube_ tool outside the roles: the seed's 403 body. For mcp (when the server has
    // one it lacks) and for mcp-limited (whose roles are namespaces_list and pods_list).
    let forbidden = json!({"error": "Forbidden",
        "message": "MCP Tool Access denied: Insufficient permissions for this tool."});
    let limited = own_token(&keycloak, "mcp-limited").await;
    let (_, limited_roles) = exchanged_roles(&keycloak, &limited).await;
    let mut refusals: Vec<(String, String)> = Vec::new();
    if let Some(outside) = direct.difference(&roles).next() {
        refusals.push((own.clone(), format!("kube_{outside}")));
    }
    let outside_limited = direct.difference(&limited_roles).find(|t| roles.contains(*t)).unwrap();
    refusals.push((limited.clone(), format!("kube_{outside_limited}")));
    eprintln!(
        "expected through the gateway for mcp: {expected:?}; refused: {:?}",
        refusals.iter().map(|r| &r.1).collect::<Vec<_>>()
    );
    for (token, tool) in &refusals {
        let answer = raw_call(&url, Some(token), tool).await;
        assert_eq!(answer.status(), 403, "{tool}");
        let body: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        assert_eq!(body, forbidden, "{tool}");
    }
    assert!(!list(&url, Some(&limited)).await.contains(&format!("kube_{outside_limited}")));

    // No token, a garbage token: the seed's 401, its WWW-Authenticate naming this gateway.
    let unauthenticated =
        json!({"error": "Unauthorized", "message": "MCP Tool Access denied: Authentication required."});
    let www = format!("Bearer resource_metadata={origin}/.well-known/oauth-protected-resource/mcp");
    for token in [None, Some("garbage.not-a.jwt")] {
        let answer = raw_call(&url, token, "kube_namespaces_list").await;
        assert_eq!(answer.status(), 401, "{token:?}");
        assert_eq!(answer.headers()["www-authenticate"], www.as_str(), "{token:?}");
        let body: Value = serde_json::from_str(&answer.text().await.unwrap()).unwrap();
        assert_eq!(body, unauthenticated, "{token:?}");
    }

    // What reached kubernetes-mcp-server: never a caller's own token; the call carried an
    // exchanged one for the server's audience, of user mcp, made by mcp-gateway.
    let seen = recorder.text();
    assert!(seen.contains("namespaces_list"), "the forwarder saw the call");
    for caller in [&own, &limited] {
        assert!(!seen.contains(caller.as_str()), "a caller's own token reached kubernetes-mcp-server");
    }
    let bearers: Vec<String> = recorder
        .authorizations()
        .iter()
        .map(|v| v.strip_prefix("Bearer ").unwrap_or_else(|| panic!("not a bearer: {v}")).to_owned())
        .collect();
    assert!(!bearers.is_empty(), "no Authorization reached the server");
    eprintln!("{} Authorization headers reached kubernetes-mcp-server, all exchanged", bearers.len());
    for bearer in &bearers {
        let claims = decode_claims(bearer).unwrap();
        assert_eq!(claims["aud"], BACKEND_AUDIENCE, "{claims}");
        assert_eq!(claims["azp"], GATEWAY_CLIENT, "{claims}");
        assert_eq!(claims["iss"], PINNED_ISSUER, "{claims}");
        // The very token the server passed on is the seed's user to the apiserver.
        match cluster.whoami(bearer).await.unwrap() {
            WhoAmI::User { username, .. } => assert_eq!(username, cluster.user("mcp")),
            WhoAmI::Unauthorized => panic!("the apiserver refused the token the gateway injected: {claims}"),
        }
    }
    drop(recorder);
    drop(server);
}

#[test]
fn base64_is_the_standard_padded_alphabet() {
    assert_eq!(base64(b"mcp-gateway:mcp-gateway-test-secret"), "bWNwLWdhdGV3YXk6bWNwLWdhdGV3YXktdGVzdC1zZWNyZXQ=");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"a"), "YQ==");
    assert_eq!(base64(b""), "");
}
