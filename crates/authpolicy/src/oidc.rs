//! The real [`JwtVerifier`]: Apiary's own OIDC verification (`apiary_policy::authn`: discovery,
//! JWKS cache with single-flight refetch, algorithm allow-list, `iss`/`exp`/`nbf`) for each
//! `jwt.issuerUrl`. One authenticator per issuer, created on first use and shared by every policy
//! that names it. Nothing fails open: an issuer whose keys cannot be fetched refuses the token.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use apiary_config::OidcConfig;
use apiary_policy::authn::{Authenticator, AuthnOptions};
use serde_json::Value;

use crate::identity::{JwtVerifier, VerifyError};

/// Most distinct issuers kept; a policy set naming more is refused for the extra ones.
pub const MAX_ISSUERS: usize = 64;

/// Verifies AuthPolicy JWTs with Apiary's OIDC code.
///
/// `audiences` of the AuthPolicy `jwt` rule are not checked (the seed sets none, and unset means
/// any audience, as in Authorino); the `aud` claim is still given to the policy. Apiary's
/// verification requires `exp`, `iss` and `sub`, which Keycloak access tokens always carry.
pub struct OidcVerifier {
    options: AuthnOptions,
    allow_http: bool,
    issuers: Mutex<HashMap<String, Arc<Authenticator>>>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.issuers.lock().map(|m| m.len()).unwrap_or_default();
        f.debug_struct("OidcVerifier").field("allow_http", &self.allow_http).field("issuers", &count).finish()
    }
}

impl OidcVerifier {
    /// `allow_http` accepts `http://` issuers (tests, or an in-cluster IdP without TLS); otherwise
    /// an `http://` `issuerUrl` refuses every token.
    pub fn new(options: AuthnOptions, allow_http: bool) -> Self {
        OidcVerifier { options, allow_http, issuers: Mutex::new(HashMap::new()) }
    }

    /// The authenticator of `issuer`, created (without I/O) on first use.
    fn authenticator(&self, issuer: &str) -> Result<Arc<Authenticator>, VerifyError> {
        let mut issuers = self.issuers.lock().map_err(|_| VerifyError("verifier state poisoned".into()))?;
        if let Some(found) = issuers.get(issuer) {
            return Ok(Arc::clone(found));
        }
        if issuers.len() >= MAX_ISSUERS {
            return Err(VerifyError(format!("more than {MAX_ISSUERS} issuers in use")));
        }
        let mut config = OidcConfig::new(issuer);
        config.insecure_allow_http = self.allow_http;
        let created = Arc::new(
            Authenticator::new(&config, self.options.clone())
                .map_err(|e| VerifyError(format!("issuer {issuer} cannot be used: {e}")))?,
        );
        issuers.insert(issuer.to_owned(), Arc::clone(&created));
        Ok(created)
    }
}

impl JwtVerifier for OidcVerifier {
    async fn verify(&self, issuer_url: &str, token: &str) -> Result<Value, VerifyError> {
        let authenticator = self.authenticator(issuer_url)?;
        // The authenticator reads a raw `Authorization` value; a token that cannot be one is no JWT.
        let header = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| VerifyError("malformed token: not a header value".into()))?;
        // AuthnError texts are fixed strings, never parts of the token.
        let identity =
            authenticator.authenticate_shared(Some(&header)).await.map_err(|e| VerifyError(e.to_string()))?;
        Ok(Value::Object(identity.claims.clone()))
    }
}
