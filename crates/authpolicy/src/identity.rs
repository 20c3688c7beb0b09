//! The seam to the JWT verifier: the evaluator asks it to verify a bearer token against an
//! AuthPolicy `jwt.issuerUrl`; the verifier owns discovery, the JWKS cache and clock checks.
use std::future::Future;

use serde_json::Value;

/// Why a token was not accepted. The message must not contain the token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct VerifyError(pub String);

/// Verifies a JWT (signature, `iss`, `exp`/`nbf`) for an issuer and returns its claims.
pub trait JwtVerifier: Send + Sync {
    fn verify(&self, issuer_url: &str, token: &str) -> impl Future<Output = Result<Value, VerifyError>> + Send;
}

/// A shared verifier (one per process, used by several enforcers) verifies as the one it shares.
impl<T: JwtVerifier> JwtVerifier for std::sync::Arc<T> {
    fn verify(&self, issuer_url: &str, token: &str) -> impl Future<Output = Result<Value, VerifyError>> + Send {
        T::verify(self, issuer_url, token)
    }
}
