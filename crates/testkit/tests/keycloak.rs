//! The Keycloak harness against the real server: discovery names our issuer, the realm's
//! users get the claims the tests rely on, `mcp-gateway` can exchange a user token for the
//! backend audience, and Keycloak refuses a user without backend roles.
#![allow(clippy::unwrap_used)]

use apiary_testkit::keycloak::{
    BACKEND_AUDIENCE, ExchangeRefused, GATEWAY_CLIENT, GATEWAY_SECRET, Keycloak, USER_CLIENT, decode_claims,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Instant;

fn strings(value: &Value) -> BTreeSet<String> {
    value.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn issues_exchanges_and_refuses_like_keycloak() {
    let started = Instant::now();
    let keycloak = Keycloak::start().await.unwrap();
    eprintln!("Keycloak started in {:.1}s", started.elapsed().as_secs_f64());

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let discovery: Value = http.get(keycloak.discovery_url()).send().await.unwrap().json().await.unwrap();
    assert_eq!(discovery["issuer"], keycloak.issuer());
    assert!(keycloak.issuer().starts_with("http://127.0.0.1:"), "{}", keycloak.issuer());
    assert_eq!(discovery["token_endpoint"], keycloak.token_endpoint());
    assert_eq!(discovery["jwks_uri"], keycloak.jwks_uri());
    assert_eq!(discovery["introspection_endpoint"], keycloak.introspection_endpoint());
    let jwks: Value = http.get(keycloak.jwks_uri()).send().await.unwrap().json().await.unwrap();
    assert!(jwks["keys"].as_array().unwrap().iter().any(|k| k["use"] == "sig" && k["alg"] == "RS256"), "{jwks}");

    let user = keycloak.password_token(USER_CLIENT, "mcp", "mcp", "openid").await.unwrap();
    // Keycloak rounds down when a second has begun since `iat`.
    assert!((1790..=1800).contains(&user.expires_in), "{user:?}");
    let claims = user.claims().unwrap();
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 1800);
    assert_eq!(claims["iss"], keycloak.issuer());
    assert_eq!(claims["aud"], GATEWAY_CLIENT);
    assert_eq!(claims["azp"], USER_CLIENT);
    assert_eq!(
        strings(&claims["groups"]),
        BTreeSet::from(["accounting", "engineering", "mcp-users"].map(String::from))
    );
    let wrong = keycloak.password_token(USER_CLIENT, "mcp", "not-the-password", "openid").await.unwrap_err();
    assert!(wrong.to_string().contains("Invalid user credentials"), "{wrong}");

    let exchanged = keycloak
        .exchange(GATEWAY_CLIENT, GATEWAY_SECRET, &user.access_token, BACKEND_AUDIENCE, "openid profile groups")
        .await
        .unwrap();
    assert_eq!(exchanged.issued_token_type.as_deref(), Some("urn:ietf:params:oauth:token-type:access_token"));
    let claims = decode_claims(&exchanged.access_token).unwrap();
    assert_eq!(claims["aud"], BACKEND_AUDIENCE);
    assert_eq!(claims["azp"], GATEWAY_CLIENT);
    assert_eq!(claims["preferred_username"], "mcp");
    assert_eq!(strings(&claims["groups"]).len(), 3);
    let roles = strings(&claims["resource_access"][BACKEND_AUDIENCE]["roles"]);
    assert_eq!(roles.len(), 22, "{roles:?}");
    assert!(roles.contains("namespaces_list"));
    assert!(claims.get("realm_access").is_none(), "{claims}");

    let norole = keycloak.password_token(USER_CLIENT, "mcp-norole", "mcp-norole", "openid").await.unwrap();
    let refused = keycloak
        .exchange(GATEWAY_CLIENT, GATEWAY_SECRET, &norole.access_token, BACKEND_AUDIENCE, "openid profile groups")
        .await
        .unwrap_err();
    match &refused {
        ExchangeRefused::Refused { status, error, description } => {
            assert_eq!(*status, 400);
            assert_eq!(error, "invalid_request");
            assert!(description.contains("Requested audience not available"), "{description}");
        }
        ExchangeRefused::Failed(err) => panic!("expected a refusal, got {err}"),
    }

    // Drop stops the whole process group and removes the copy.
    let port = keycloak.port();
    let log = keycloak.log_path();
    drop(keycloak);
    assert!(!log.exists(), "{} was left behind", log.display());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "port {port} still answers");
}

#[tokio::test]
async fn the_shared_instance_is_started_once() {
    let first = Keycloak::shared().await;
    let second = Keycloak::shared().await;
    assert!(std::ptr::eq(first, second));
    let token = second.password_token(USER_CLIENT, "mcp-limited", "mcp-limited", "openid").await.unwrap();
    let claims = token.claims().unwrap();
    assert_eq!(claims["iss"], first.issuer());
    assert_eq!(strings(&claims["groups"]), BTreeSet::from(["engineering".to_owned()]));
}
