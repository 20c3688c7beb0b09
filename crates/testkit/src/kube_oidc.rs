//! The test cluster's OIDC ground for seed 004 use case 2: `cargo xtask cluster up` makes the
//! apiserver trust the issuer `https://127.0.0.1:8443/realms/mcp` (audience
//! `mcp-test/kubernetes-mcp`, users `<issuer>#<preferred_username>`, groups `oidc:<group>`) and
//! signs a Keycloak serving certificate with the cluster CA. [`ClusterOidc`] finds that material,
//! starts the Keycloak the apiserver trusts ([`ClusterOidc::start_keycloak`]) and asks the
//! apiserver who a bearer token is ([`ClusterOidc::whoami`], a `SelfSubjectReview`).
//!
//! Paths come from `cargo xtask cluster env` (`APIARY_CLUSTER_OIDC_CA`,
//! `APIARY_CLUSTER_KEYCLOAK_CERT`, `APIARY_CLUSTER_KEYCLOAK_KEY`), or else from the cluster's work
//! dir beside `KUBECONFIG` (`<dir>/pki/…`), which is what `cargo xtask test` exports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::keycloak::{Keycloak, KeycloakError, PINNED_ISSUER, PinnedTls};

/// The audience the apiserver accepts (the backend client of the realm).
pub const AUDIENCE: &str = "mcp-test/kubernetes-mcp";
/// The prefix the apiserver puts on the token's groups.
pub const GROUPS_PREFIX: &str = "oidc:";
/// One request to the apiserver.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest kubeconfig this reads.
const KUBECONFIG_LIMIT: u64 = 1 << 20;

/// Why the cluster's OIDC ground is not usable.
#[derive(Debug, thiserror::Error)]
pub enum KubeOidcError {
    #[error("{what} is not set: export it from `cargo xtask cluster env` (the cluster must be up)")]
    NotSet { what: &'static str },
    #[error(
        "{path}: {reason}; run `cargo xtask cluster up` (a cluster started before the OIDC issuer existed needs `down` first)"
    )]
    Missing { path: PathBuf, reason: String },
    #[error("the kubeconfig {path} names no `server:`")]
    NoServer { path: PathBuf },
    #[error("request to the apiserver ({url}) failed: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("the apiserver ({url}) answered HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
}

/// Who the apiserver says a bearer token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhoAmI {
    /// The token authenticated: the user name and groups of the `SelfSubjectReview`.
    User { username: String, groups: Vec<String> },
    /// The apiserver refused the token (401).
    Unauthorized,
}

/// The test cluster's OIDC issuer and the material to serve and trust it.
#[derive(Debug, Clone)]
pub struct ClusterOidc {
    /// `https://127.0.0.1:8443/realms/mcp`.
    pub issuer: String,
    /// Keycloak's serving pair and the CA that signed it (the cluster CA, which also signed
    /// the apiserver's certificate).
    pub keycloak_tls: PinnedTls,
    /// The host kubeconfig (admin).
    pub kubeconfig: PathBuf,
    /// The apiserver as the host reaches it, e.g. `https://127.0.0.1:16443`.
    pub api_server: String,
}

impl ClusterOidc {
    /// Finds the material of the running test cluster; fails (naming the fix) when any of it
    /// is missing.
    pub fn from_env() -> Result<Self, KubeOidcError> {
        Self::from_lookup(|key| std::env::var_os(key).filter(|v| !v.is_empty()).map(PathBuf::from))
    }

    fn from_lookup(var: impl Fn(&str) -> Option<PathBuf>) -> Result<Self, KubeOidcError> {
        let kubeconfig = var("KUBECONFIG").ok_or(KubeOidcError::NotSet { what: "KUBECONFIG" })?;
        let pki = kubeconfig.parent().map(|dir| dir.join("pki")).unwrap_or_else(|| PathBuf::from("pki"));
        let pick = |key: &str, file: &str| var(key).unwrap_or_else(|| pki.join(file));
        let keycloak_tls = PinnedTls {
            cert: pick("APIARY_CLUSTER_KEYCLOAK_CERT", "keycloak.crt"),
            key: pick("APIARY_CLUSTER_KEYCLOAK_KEY", "keycloak.key"),
            ca: pick("APIARY_CLUSTER_OIDC_CA", "ca.crt"),
        };
        for path in [&kubeconfig, &keycloak_tls.cert, &keycloak_tls.key, &keycloak_tls.ca] {
            if let Err(err) = std::fs::metadata(path) {
                return Err(KubeOidcError::Missing { path: path.clone(), reason: err.to_string() });
            }
        }
        let api_server = server_of(&kubeconfig)?;
        let issuer = var("APIARY_CLUSTER_OIDC_ISSUER")
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| PINNED_ISSUER.to_owned());
        Ok(Self { issuer, keycloak_tls, kubeconfig, api_server })
    }

    /// The Kubernetes user name of a realm user: `<issuer>#<preferred_username>` (the seed's
    /// Step 3 subject).
    pub fn user(&self, preferred_username: &str) -> String {
        format!("{}#{preferred_username}", self.issuer)
    }

    /// Starts the Keycloak the apiserver trusts ([`Keycloak::start_pinned`] with the cluster's
    /// pair): one at a time on the machine.
    pub async fn start_keycloak(&self) -> Result<Keycloak, KeycloakError> {
        Keycloak::start_pinned(&self.keycloak_tls).await
    }

    /// Writes a kubeconfig with the cluster's server and CA and **no credentials** (for a
    /// server that passes its callers' tokens through) to `path`.
    pub fn write_passthrough_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        let text = format!(
            "# The test cluster without credentials: callers' bearer tokens are passed through.\n\
             apiVersion: v1\nkind: Config\nclusters:\n- name: apiary\n  cluster:\n    server: \"{}\"\n    \
             certificate-authority: \"{}\"\nusers:\n- name: passthrough\n  user: {{}}\ncontexts:\n- name: apiary\n  \
             context: {{cluster: apiary, user: passthrough}}\ncurrent-context: apiary\n",
            self.api_server,
            self.keycloak_tls.ca.display()
        );
        std::fs::write(path, text)
    }

    /// Asks the apiserver who `token` is, with a `SelfSubjectReview` (what `kubectl auth whoami`
    /// does). A fresh cluster's JWT authenticator may still be initialising (it retries every
    /// ~10 s until Keycloak answers), so a caller expecting a user should poll.
    pub async fn whoami(&self, token: &str) -> Result<WhoAmI, KubeOidcError> {
        let url = format!("{}/apis/authentication.k8s.io/v1/selfsubjectreviews", self.api_server);
        let pem = std::fs::read(&self.keycloak_tls.ca)
            .map_err(|err| KubeOidcError::Missing { path: self.keycloak_tls.ca.clone(), reason: err.to_string() })?;
        let http_err = |source| KubeOidcError::Http { url: url.clone(), source };
        let ca = reqwest::Certificate::from_pem(&pem).map_err(http_err)?;
        let client = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .tls_certs_only([ca])
            .no_proxy()
            .build()
            .map_err(http_err)?;
        let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
        let response = client.post(&url).bearer_auth(token).json(&review).send().await.map_err(http_err)?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(http_err)?;
        if status == 401 {
            return Ok(WhoAmI::Unauthorized);
        }
        let parsed: Option<Value> = serde_json::from_str(&body).ok();
        let user = parsed.as_ref().map(|v| &v["status"]["userInfo"]);
        match user.and_then(|u| u["username"].as_str()) {
            Some(username) if (200..300).contains(&status) => {
                let groups = user
                    .and_then(|u| u["groups"].as_array())
                    .map(|gs| gs.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default();
                Ok(WhoAmI::User { username: username.to_owned(), groups })
            }
            _ => Err(KubeOidcError::Status { url, status, body: body.chars().take(500).collect() }),
        }
    }
}

/// The `server:` of a kubeconfig's (first) cluster.
fn server_of(kubeconfig: &Path) -> Result<String, KubeOidcError> {
    let missing = |reason: String| KubeOidcError::Missing { path: kubeconfig.to_owned(), reason };
    let size = std::fs::metadata(kubeconfig).map_err(|err| missing(err.to_string()))?.len();
    if size > KUBECONFIG_LIMIT {
        return Err(missing(format!("larger than {KUBECONFIG_LIMIT} bytes")));
    }
    let text = std::fs::read_to_string(kubeconfig).map_err(|err| missing(err.to_string()))?;
    text.lines()
        .find_map(|line| line.trim().strip_prefix("server:"))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| KubeOidcError::NoServer { path: kubeconfig.to_owned() })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_material_beside_the_kubeconfig_and_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, "clusters:\n- cluster:\n    server: \"https://127.0.0.1:16443\"\n").unwrap();
        let lookup = |key: &str| (key == "KUBECONFIG").then(|| kubeconfig.clone());
        let err = ClusterOidc::from_lookup(lookup).unwrap_err();
        assert!(matches!(&err, KubeOidcError::Missing { path, .. } if path.ends_with("pki/keycloak.crt")), "{err}");

        std::fs::create_dir(dir.path().join("pki")).unwrap();
        for f in ["keycloak.crt", "keycloak.key", "ca.crt"] {
            std::fs::write(dir.path().join("pki").join(f), "x").unwrap();
        }
        let oidc = ClusterOidc::from_lookup(lookup).unwrap();
        assert_eq!(oidc.api_server, "https://127.0.0.1:16443");
        assert_eq!(oidc.issuer, PINNED_ISSUER);
        assert_eq!(oidc.keycloak_tls.ca, dir.path().join("pki/ca.crt"));
        assert_eq!(oidc.user("mcp"), "https://127.0.0.1:8443/realms/mcp#mcp");

        let path = dir.path().join("passthrough.kubeconfig");
        oidc.write_passthrough_kubeconfig(&path).unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(server_of(&path).unwrap(), "https://127.0.0.1:16443");
        assert!(written.contains("user: {}") && !written.contains("client-key"), "{written}");

        assert!(matches!(ClusterOidc::from_lookup(|_| None), Err(KubeOidcError::NotSet { .. })));
    }
}
