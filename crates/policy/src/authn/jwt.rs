//! Checking a JWT: its header is read first so that a disallowed algorithm is refused before any
//! key is looked up; then the issuer's key for its `kid` verifies it and jsonwebtoken checks
//! `iss`, `aud`, `exp` and `nbf`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::error::{AuthnError, InvalidReason};
use super::jwks::Jwks;
use crate::identity::{Identity, IdentityKind};

/// True when the token has the shape of a JWS in compact form: three base64url parts.
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    let mut parts = 0;
    for part in token.split('.') {
        parts += 1;
        if parts > 3 || !part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return false;
        }
    }
    parts == 3
}

/// What the header says, once the algorithm is known to be allowed.
struct Header {
    alg: Algorithm,
    kid: Option<String>,
}

fn read_header(token: &str) -> Result<Header, AuthnError> {
    let encoded = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| AuthnError::Malformed("token header is not base64url"))?;
    let header: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|_| AuthnError::Malformed("token header is not a JSON object"))?;
    let alg = header.get("alg").and_then(Value::as_str).ok_or(AuthnError::Malformed("token header has no alg"))?;
    let alg = super::keys::allowed_alg(alg).ok_or(AuthnError::invalid(InvalidReason::AlgorithmNotAllowed))?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(AuthnError::Malformed("token kid is not a string")),
    };
    Ok(Header { alg, kid })
}

/// The claim checks, fixed at construction.
pub(crate) struct ClaimRules {
    pub issuer: String,
    pub audience: Option<String>,
    pub leeway_secs: u64,
}

impl ClaimRules {
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway_secs;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        let mut required = vec!["exp", "iss", "sub"];
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            // jsonwebtoken refuses any `aud` when none is expected; unset means "not checked".
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        v
    }
}

/// Verifies a JWT and returns its caller.
pub(crate) async fn verify(token: &str, jwks: &Jwks, rules: &ClaimRules) -> Result<Identity, AuthnError> {
    let header = read_header(token)?;
    let key = jwks.resolve(header.kid.as_deref(), header.alg).await?;
    let Some(decoding_key) = &key.key else {
        return Err(AuthnError::invalid(InvalidReason::KeyNotUsable));
    };
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, decoding_key, &rules.validation(header.alg))
        .map_err(|e| map_error(e.kind()))?;
    let claims = data.claims;
    let subject = match claims.get("sub") {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        _ => return Err(AuthnError::invalid(InvalidReason::MissingClaim)),
    };
    Ok(Identity { subject, claims, kind: IdentityKind::Jwt })
}

fn map_error(kind: &ErrorKind) -> AuthnError {
    let reason = match kind {
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            return AuthnError::Malformed("token is not a well-formed JWT");
        }
        ErrorKind::ExpiredSignature => InvalidReason::Expired,
        ErrorKind::ImmatureSignature => InvalidReason::NotYetValid,
        ErrorKind::InvalidIssuer => InvalidReason::Issuer,
        ErrorKind::InvalidAudience => InvalidReason::Audience,
        ErrorKind::MissingRequiredClaim(_) => InvalidReason::MissingClaim,
        ErrorKind::InvalidClaimFormat(_) => InvalidReason::ClaimFormat,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm | ErrorKind::UnsupportedAlgorithm => {
            InvalidReason::AlgorithmNotAllowed
        }
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidEddsaKey | ErrorKind::InvalidRsaKey(_) => {
            InvalidReason::KeyNotUsable
        }
        // Signature mismatch and anything the crypto provider reports.
        _ => InvalidReason::Signature,
    };
    AuthnError::invalid(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("aGk.aGk.aGk"));
        assert!(looks_like_jwt("aGk.aGk."));
        assert!(!looks_like_jwt("aGk.aGk"));
        assert!(!looks_like_jwt("a.b.c.d.e"));
        assert!(!looks_like_jwt("a.b=.c"));
        assert!(!looks_like_jwt("opaque-token"));
    }

    #[test]
    fn header_refuses_none_and_hmac_before_keys() {
        for alg in ["none", "HS256", "HS512", "ES512"] {
            let token = format!("{}.e30.", b64(&format!(r#"{{"alg":"{alg}","kid":"k"}}"#)));
            let err = read_header(&token).err();
            assert_eq!(err, Some(AuthnError::invalid(InvalidReason::AlgorithmNotAllowed)), "{alg}");
        }
        let ok = read_header(&format!("{}.e30.x", b64(r#"{"alg":"ES256","kid":"k1"}"#))).ok();
        assert!(matches!(ok, Some(Header { alg: Algorithm::ES256, kid: Some(k) }) if k == "k1"));
    }

    #[test]
    fn header_garbage_is_malformed() {
        for token in ["!!!.e30.x".to_owned(), format!("{}.e30.x", b64("[1]")), format!("{}.e30.x", b64(r#"{"kid":1}"#))]
        {
            assert!(matches!(read_header(&token), Err(AuthnError::Malformed(_))), "{token}");
        }
        let token = format!("{}.e30.x", b64(r#"{"alg":"RS256","kid":7}"#));
        assert!(matches!(read_header(&token), Err(AuthnError::Malformed(_))));
    }
}
