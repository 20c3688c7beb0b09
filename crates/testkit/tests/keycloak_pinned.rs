//! The pinned Keycloak (`Keycloak::start_pinned`): HTTPS on 127.0.0.1:8443 with a certificate
//! from a CA of this test's own (openssl), every URL and every token's `iss` the pinned issuer,
//! its client trusting only that CA, and a clear failure when a certificate file is missing.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use apiary_testkit::keycloak::{
    BACKEND_AUDIENCE, GATEWAY_CLIENT, GATEWAY_SECRET, Keycloak, KeycloakError, PINNED_ISSUER, PinnedTls, USER_CLIENT,
    decode_claims,
};
use serde_json::Value;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a serving pair for 127.0.0.1 signed by it, in `dir`.
fn make_pki(dir: &Path) -> PinnedTls {
    let ca = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1"];
    openssl(dir, &[&ca[..], &["-subj", "/CN=pinned-test-ca"]].concat());
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature,keyEncipherment\n",
    )
    .unwrap();
    let csr = ["req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "kc.key", "-out", "kc.csr"];
    openssl(dir, &[&csr[..], &["-subj", "/CN=keycloak"]].concat());
    let sign = ["x509", "-req", "-in", "kc.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1"];
    openssl(dir, &[&sign[..], &["-extfile", "ext", "-out", "kc.crt"]].concat());
    PinnedTls { cert: dir.join("kc.crt"), key: dir.join("kc.key"), ca: dir.join("ca.crt") }
}

#[tokio::test]
async fn serves_the_pinned_issuer_over_https_trusting_only_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let tls = make_pki(dir.path());

    let missing = PinnedTls { cert: dir.path().join("absent.crt"), ..tls.clone() };
    let err = Keycloak::start_pinned(&missing).await.unwrap_err();
    assert!(matches!(&err, KeycloakError::MissingTls { path, .. } if path.ends_with("absent.crt")), "{err}");

    let keycloak = Keycloak::start_pinned(&tls).await.unwrap();
    assert_eq!(keycloak.issuer(), PINNED_ISSUER);
    assert!(keycloak.token_endpoint().starts_with("https://127.0.0.1:8443/realms/mcp/"));
    let discovery: Value =
        keycloak.http().unwrap().get(keycloak.discovery_url()).send().await.unwrap().json().await.unwrap();
    assert_eq!(discovery["issuer"], PINNED_ISSUER);
    assert_eq!(discovery["token_endpoint"], keycloak.token_endpoint());

    // The HTTPS is real: a client without the CA does not get through.
    let stranger = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(stranger.get(keycloak.discovery_url()).send().await.is_err());

    // Tokens fetched over the plain HTTP port carry the pinned issuer too.
    let via_http = reqwest::Client::builder().no_proxy().build().unwrap();
    let form = [("grant_type", "password"), ("client_id", USER_CLIENT), ("username", "mcp"), ("password", "mcp")];
    let url = format!("http://127.0.0.1:{}/realms/mcp/protocol/openid-connect/token", keycloak.port());
    let set: Value = via_http.post(url).form(&form).send().await.unwrap().json().await.unwrap();
    assert_eq!(decode_claims(set["access_token"].as_str().unwrap()).unwrap()["iss"], PINNED_ISSUER);

    let user = keycloak.password_token(USER_CLIENT, "mcp", "mcp", "openid").await.unwrap();
    assert_eq!(user.claims().unwrap()["iss"], PINNED_ISSUER);
    let exchanged = keycloak
        .exchange(GATEWAY_CLIENT, GATEWAY_SECRET, &user.access_token, BACKEND_AUDIENCE, "openid profile groups")
        .await
        .unwrap();
    let claims = exchanged.claims().unwrap();
    assert_eq!(claims["iss"], PINNED_ISSUER);
    assert_eq!(claims["aud"], BACKEND_AUDIENCE);
}
