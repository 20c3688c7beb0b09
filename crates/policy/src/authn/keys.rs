//! An issuer's JWKS turned into verification keys, and the choice of the key for one token.
//! Only signature keys of an allowed algorithm can be picked: `enc` keys, symmetric (`oct`)
//! keys and keys whose stated `alg` differs from the token's are never used to verify.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// At most this many keys of a JWKS are considered; a real issuer has a handful.
pub(crate) const MAX_KEYS: usize = 100;

const RSA_ALGS: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];

/// The token algorithms accepted at all: asymmetric only. `none` and HS* are not here, so a token
/// "signed" with the issuer's public key as an HMAC secret is refused before any key lookup.
pub(crate) fn allowed_alg(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// One key of the set.
pub(crate) struct VerifyKey {
    pub kid: Option<String>,
    /// The algorithms this key may verify; empty when it may verify nothing (enc, oct, unknown).
    algs: Vec<Algorithm>,
    /// Present exactly when `algs` is not empty.
    pub key: Option<DecodingKey>,
}

impl VerifyKey {
    fn verifies(&self, alg: Algorithm) -> bool {
        self.key.is_some() && self.algs.contains(&alg)
    }

    /// Builds the key from one JWK. Keys that may not verify are kept (with no algorithms) so
    /// that a token naming them is refused outright instead of causing a refetch.
    fn from_jwk(jwk: &Jwk) -> VerifyKey {
        let kid = jwk.common.key_id.clone();
        let algs = signing_algs(jwk);
        let key = if algs.is_empty() { None } else { DecodingKey::from_jwk(jwk).ok() };
        let algs = if key.is_some() { algs } else { Vec::new() };
        VerifyKey { kid, algs, key }
    }
}

/// The algorithms a JWK may verify: by key type and curve, narrowed to its stated `alg`, and
/// nothing for `use: enc`, other uses, `key_ops` without `verify`, or a non-signing `alg`.
fn signing_algs(jwk: &Jwk) -> Vec<Algorithm> {
    let c = &jwk.common;
    match &c.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_)) => return Vec::new(),
    }
    if let Some(ops) = &c.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return Vec::new();
    }
    let by_type: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => RSA_ALGS,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => &[],
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            _ => &[],
        },
        // Symmetric and unknown key types never verify: that is the HMAC-with-public-key hole.
        _ => &[],
    };
    match c.key_algorithm {
        None => by_type.to_vec(),
        Some(stated) => match key_alg(stated) {
            Some(alg) if by_type.contains(&alg) => vec![alg],
            _ => Vec::new(),
        },
    }
}

fn key_alg(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// The outcome of looking a token's key up.
pub(crate) enum Lookup {
    Found(Arc<VerifyKey>),
    /// A key has this kid but may not verify this algorithm: a refetch would not help.
    NotUsable,
    /// No kid in the token and several keys could verify it.
    Ambiguous,
    NotFound,
}

/// The keys of one successful fetch.
pub(crate) struct KeySet {
    keys: Vec<Arc<VerifyKey>>,
    loaded_at: Instant,
    ttl: Duration,
}

impl KeySet {
    /// Parses a JWKS document. Keys that do not parse are skipped (an issuer may publish key
    /// types we do not know); a document that is not a JWKS is an error.
    pub(crate) fn parse(body: &[u8], ttl: Duration) -> Result<KeySet, &'static str> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc = serde_json::from_slice(body).map_err(|_| "not a JWKS document")?;
        let keys = doc
            .keys
            .into_iter()
            .take(MAX_KEYS)
            .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
            .map(|jwk| Arc::new(VerifyKey::from_jwk(&jwk)))
            .collect();
        Ok(KeySet { keys, loaded_at: Instant::now(), ttl })
    }

    pub(crate) fn is_stale(&self) -> bool {
        self.loaded_at.elapsed() >= self.ttl
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key for a token with this `kid` (if any) and algorithm.
    pub(crate) fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).peekable();
                if named.peek().is_none() {
                    return Lookup::NotFound;
                }
                match named.find(|k| k.verifies(alg)) {
                    Some(k) => Lookup::Found(Arc::clone(k)),
                    None => Lookup::NotUsable,
                }
            }
            None => {
                let mut usable = self.keys.iter().filter(|k| k.verifies(alg));
                match (usable.next(), usable.next()) {
                    (Some(k), None) => Lookup::Found(Arc::clone(k)),
                    (Some(_), Some(_)) => Lookup::Ambiguous,
                    (None, _) => Lookup::NotFound,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // A P-256 public key (x, y) from RFC 7515 appendix A.3; only its shape matters here.
    const X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn ec(kid: &str, extra: serde_json::Value) -> serde_json::Value {
        let mut k = serde_json::json!({"kty": "EC", "crv": "P-256", "x": X, "y": Y, "kid": kid});
        for (name, v) in extra.as_object().unwrap() {
            k[name] = v.clone();
        }
        k
    }

    fn set(keys: Vec<serde_json::Value>) -> KeySet {
        let body = serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap();
        KeySet::parse(&body, Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn only_sig_keys_of_the_tokens_alg_are_found() {
        let s = set(vec![
            ec("sig", serde_json::json!({"use": "sig", "alg": "ES256"})),
            ec("enc", serde_json::json!({"use": "enc"})),
            ec("ops", serde_json::json!({"key_ops": ["encrypt"]})),
            ec("wrongalg", serde_json::json!({"alg": "ES384"})),
            serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "oct"}),
        ]);
        assert_eq!(s.len(), 5);
        assert!(matches!(s.lookup(Some("sig"), Algorithm::ES256), Lookup::Found(_)));
        assert!(matches!(s.lookup(Some("sig"), Algorithm::RS256), Lookup::NotUsable));
        for kid in ["enc", "ops", "wrongalg", "oct"] {
            assert!(matches!(s.lookup(Some(kid), Algorithm::ES256), Lookup::NotUsable), "{kid}");
        }
        assert!(matches!(s.lookup(Some("other"), Algorithm::ES256), Lookup::NotFound));
        // Without a kid, the only key that may verify ES256 is chosen.
        assert!(matches!(s.lookup(None, Algorithm::ES256), Lookup::Found(k) if k.kid.as_deref() == Some("sig")));
        assert!(matches!(s.lookup(None, Algorithm::EdDSA), Lookup::NotFound));
    }

    #[test]
    fn no_kid_with_two_candidates_is_ambiguous() {
        let s = set(vec![ec("a", serde_json::json!({})), ec("b", serde_json::json!({}))]);
        assert!(matches!(s.lookup(None, Algorithm::ES256), Lookup::Ambiguous));
    }

    #[test]
    fn unparseable_keys_are_skipped_but_a_non_jwks_is_an_error() {
        let s = set(vec![serde_json::json!({"kty": "weird"}), ec("a", serde_json::json!({}))]);
        assert!(matches!(s.lookup(Some("a"), Algorithm::ES256), Lookup::Found(_)));
        assert!(KeySet::parse(b"{\"nokeys\":1}", Duration::ZERO).is_err());
        assert!(KeySet::parse(b"garbage", Duration::ZERO).is_err());
    }

    #[test]
    fn hmac_and_none_are_not_allowed() {
        for name in ["none", "HS256", "HS384", "HS512", "ES512", "", "rs256"] {
            assert_eq!(allowed_alg(name), None, "{name}");
        }
        assert_eq!(allowed_alg("EdDSA"), Some(Algorithm::EdDSA));
    }
}
