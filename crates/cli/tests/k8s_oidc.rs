//! The ground of seed 004 use case 2 on the REAL test cluster (`cargo xtask cluster up`): the
//! apiserver trusts the Keycloak issuer `https://127.0.0.1:8443/realms/mcp`, and the real
//! kubernetes-mcp-server v0.0.67 in passthrough mode hands each caller's bearer token to it.
//! The pinned Keycloak (one per machine, serialised by a lock) imports the realm; user `mcp`
//! gets a password token, `mcp-gateway` exchanges it (RFC 8693) for audience
//! `mcp-test/kubernetes-mcp`, and the seed's Step 3 ClusterRoleBinding is applied as written
//! with the issuer's host put in. Then: (a) the apiserver's SelfSubjectReview names the seed's
//! user for the exchanged token; (b) the user's own token (audience `mcp-gateway`) gets 401;
//! (c) through kubernetes-mcp-server, `namespaces_list` with the exchanged token lists the
//! cluster's namespaces, `mcp-limited` (no binding) gets the RBAC refusal as `isError: true`,
//! and a call without a token gets nothing from the cluster. No gateway is involved here.
//! Runs only with `APIARY_CLUSTER_TESTS` set and `KUBECONFIG`; then a missing part fails it.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use apiary_testkit::keycloak::{
    BACKEND_AUDIENCE, GATEWAY_CLIENT, GATEWAY_SECRET, Keycloak, PINNED_ISSUER, USER_CLIENT,
};
use apiary_testkit::kube_oidc::{ClusterOidc, WhoAmI};
use apiary_testkit::kubernetes_mcp::{KubernetesMcpServer, PassthroughOptions};
use apiary_transport::client::{ConnectOptions, McpClient};
use serde_json::{Value, json};
use support::cluster::Cleanup;
use support::seed004::{block, run_seed_block, seed_section};

/// Bound on waiting for the apiserver's JWT authenticator: it retries Keycloak's discovery
/// about every 10 s until the first success.
const AUTHENTICATOR_WAIT: Duration = Duration::from_secs(90);
/// The seed's Step 3 names this issuer host; ours is the pinned one.
const SEED_ISSUER_BASE: &str = "https://keycloak.example.com";
/// The binding the seed's Step 3 creates.
const BINDING: &str = "oidc-mcp-cluster-admin";

/// The seed's Step 3 block (`kubectl apply -f -<<EOF … EOF`), as written, but for our issuer.
fn seed_step_3() -> String {
    let step = seed_section("Step 3: Authorize the mcp Keycloak user", "Step 4: Try the MCP server");
    let block = block(&step, "kubectl apply -f -<<EOF", Some("EOF"));
    assert!(block.contains(&format!("{SEED_ISSUER_BASE}/realms/mcp#mcp")), "{block}");
    block.replace(SEED_ISSUER_BASE, PINNED_ISSUER.trim_end_matches("/realms/mcp"))
}

async fn exchanged(keycloak: &Keycloak, user: &str) -> (String, String) {
    let own = keycloak.password_token(USER_CLIENT, user, user, "openid").await.unwrap();
    let scoped = keycloak
        .exchange(GATEWAY_CLIENT, GATEWAY_SECRET, &own.access_token, BACKEND_AUDIENCE, "openid profile groups")
        .await
        .unwrap();
    (own.access_token, scoped.access_token)
}

/// The text of a tool result's first content item.
fn text_of(result: &Value) -> &str {
    result["content"][0]["text"].as_str().unwrap_or_else(|| panic!("no text content: {result}"))
}

async fn call_namespaces_list(url: &str, token: Option<&str>) -> Value {
    let headers = token.map(|t| vec![("Authorization".to_owned(), format!("Bearer {t}"))]).unwrap_or_default();
    let client = McpClient::connect(url, ConnectOptions { headers, ..ConnectOptions::default() }).await.unwrap();
    let result = client.call_tool("namespaces_list", json!({})).await.unwrap();
    client.close().await.unwrap();
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apiserver_trusts_keycloak_and_kubernetes_mcp_server_passes_the_exchanged_token_through() {
    if std::env::var_os("APIARY_CLUSTER_TESTS").is_none() {
        eprintln!("SKIPPED: set APIARY_CLUSTER_TESTS=1 with KUBECONFIG (cargo xtask cluster up)");
        return;
    }
    let cluster = ClusterOidc::from_env().unwrap();
    assert_eq!(cluster.issuer, PINNED_ISSUER);
    let keycloak = cluster.start_keycloak().await.unwrap();
    assert_eq!(keycloak.issuer(), PINNED_ISSUER);

    let (own, scoped) = exchanged(&keycloak, "mcp").await;
    let (_, limited) = exchanged(&keycloak, "mcp-limited").await;
    let claims = apiary_testkit::keycloak::decode_claims(&scoped).unwrap();
    assert_eq!(claims["iss"], PINNED_ISSUER, "{claims}");
    assert_eq!(claims["aud"], BACKEND_AUDIENCE, "{claims}");
    assert_eq!(apiary_testkit::keycloak::decode_claims(&own).unwrap()["aud"], GATEWAY_CLIENT);

    // The seed's Step 3, as written, for the pinned issuer.
    // Deletes the seed's binding when the test ends, passed or failed, before the Keycloak lock
    // is released (declared after the Keycloak, so dropped first).
    let _binding = Cleanup { namespaces: Vec::new(), cluster_scoped: vec![("clusterrolebinding", BINDING.to_owned())] };
    run_seed_block(&seed_step_3());

    // (a) The exchanged token is the seed's user, with the realm's groups.
    let deadline = tokio::time::Instant::now() + AUTHENTICATOR_WAIT;
    let me = loop {
        match cluster.whoami(&scoped).await.unwrap() {
            WhoAmI::User { username, groups } => break (username, groups),
            WhoAmI::Unauthorized => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the apiserver refused the exchanged token for {AUTHENTICATOR_WAIT:?}: see its log \
                     (logs/kube-apiserver.log in the cluster's work dir)"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    assert_eq!(me.0, "https://127.0.0.1:8443/realms/mcp#mcp");
    assert_eq!(me.0, cluster.user("mcp"));
    for group in ["oidc:accounting", "oidc:engineering", "oidc:mcp-users", "system:authenticated"] {
        assert!(me.1.iter().any(|g| g == group), "{group} missing from {:?}", me.1);
    }

    // (b) The user's own token is not for the apiserver (its audience is mcp-gateway).
    assert_eq!(cluster.whoami(&own).await.unwrap(), WhoAmI::Unauthorized);

    // (c) kubernetes-mcp-server passes each call's token through.
    let server = KubernetesMcpServer::start_passthrough(&cluster, &PassthroughOptions::default()).await.unwrap();
    let url = server.url();
    // Listing needs no token (a gateway lists tools without one).
    let anonymous = McpClient::connect(&url, ConnectOptions::default()).await.unwrap();
    let tools = anonymous.list_tools().await.unwrap();
    assert!(tools.iter().any(|t| t["name"] == "namespaces_list"), "{tools:?}");
    anonymous.close().await.unwrap();

    let listed = call_namespaces_list(&url, Some(&scoped)).await;
    assert_ne!(listed["isError"], true, "{listed}");
    for ns in ["default", "kube-system", "kube-public"] {
        assert!(text_of(&listed).contains(ns), "{ns} missing from {listed}");
    }

    let refused = call_namespaces_list(&url, Some(&limited)).await;
    assert_eq!(refused["isError"], true, "{refused}");
    let why = text_of(&refused);
    assert!(why.contains("forbidden") && why.contains(&cluster.user("mcp-limited")), "{why}");

    // Without a token the server has no credentials of its own to fall back on.
    let bare = call_namespaces_list(&url, None).await;
    assert_eq!(bare["isError"], true, "{bare}");
    assert!(!text_of(&bare).contains("kube-system"), "{bare}");

    // The user's own token passes through too, and the apiserver refuses it.
    let own_call = call_namespaces_list(&url, Some(&own)).await;
    assert_eq!(own_call["isError"], true, "{own_call}");
    assert!(!text_of(&own_call).contains("kube-system"), "{own_call}");
}
