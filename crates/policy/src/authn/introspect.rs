//! RFC 7662 introspection for tokens that are not JWTs: the issuer is asked whether the token is
//! active. Positive answers are cached briefly, keyed by the token's SHA-256 (never the token).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use url::Url;

use super::error::{AuthnError, InvalidReason};
use super::fetch;
use crate::identity::{Identity, IdentityKind};

pub(crate) struct IntrospectSettings {
    pub url: Url,
    pub issuer: String,
    pub audience: Option<String>,
    /// `Authorization: Basic …` for the endpoint, when a client id is configured.
    pub basic_auth: Option<String>,
    pub leeway_secs: u64,
    pub max_bytes: usize,
    pub cache_entries: usize,
    pub cache_ttl: Duration,
    /// How long to wait between warnings about an unreachable endpoint.
    pub warn_every: Duration,
}

/// The `Authorization` value for RFC 6749 §2.3.1 client authentication: id and secret are
/// form-urlencoded before they are joined and base64-encoded.
pub(crate) fn basic_auth(client_id: &str, client_secret: &str) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("Basic {}", STANDARD.encode(format!("{}:{}", enc(client_id), enc(client_secret))))
}

type TokenHash = [u8; 32];

pub(crate) struct Introspector {
    settings: IntrospectSettings,
    client: reqwest::Client,
    cache: std::sync::Mutex<HashMap<TokenHash, (Identity, Instant)>>,
    last_warn: std::sync::Mutex<Option<Instant>>,
}

impl Introspector {
    pub(crate) fn new(settings: IntrospectSettings, client: reqwest::Client) -> Introspector {
        Introspector {
            settings,
            client,
            cache: std::sync::Mutex::new(HashMap::new()),
            last_warn: std::sync::Mutex::new(None),
        }
    }

    pub(crate) async fn check(&self, token: &str) -> Result<Identity, AuthnError> {
        let hash: TokenHash = Sha256::digest(token.as_bytes()).into();
        if let Some(identity) = self.cached(&hash) {
            return Ok(identity);
        }
        let answer = match self.ask(token).await {
            Ok(answer) => answer,
            Err(error) => {
                self.warn(&error);
                let retry_after_secs = self.settings.warn_every.as_secs().max(1);
                return Err(AuthnError::Unavailable { retry_after_secs });
            }
        };
        let (identity, ttl) = self.judge(answer)?;
        self.remember(hash, &identity, ttl);
        Ok(identity)
    }

    async fn ask(&self, token: &str) -> Result<Map<String, Value>, fetch::FetchError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let mut request = self
            .client
            .post(self.settings.url.clone())
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .body(body);
        if let Some(auth) = &self.settings.basic_auth {
            request = request.header(http::header::AUTHORIZATION, auth);
        }
        let fetched = fetch::send(request, self.settings.max_bytes).await?;
        Ok(serde_json::from_slice(&fetched.body)?)
    }

    /// The caller an answer describes, and how long it may be cached; or why it is refused.
    fn judge(&self, answer: Map<String, Value>) -> Result<(Identity, Duration), AuthnError> {
        if answer.get("active") != Some(&Value::Bool(true)) {
            return Err(AuthnError::Inactive);
        }
        if let Some(iss) = answer.get("iss")
            && iss.as_str() != Some(self.settings.issuer.as_str())
        {
            return Err(AuthnError::invalid(InvalidReason::Issuer));
        }
        if let (Some(want), Some(aud)) = (&self.settings.audience, answer.get("aud")) {
            let ok = match aud {
                Value::String(a) => a == want,
                Value::Array(list) => list.iter().any(|a| a.as_str() == Some(want)),
                _ => false,
            };
            if !ok {
                return Err(AuthnError::invalid(InvalidReason::Audience));
            }
        }
        let now = unix_now();
        let leeway = self.settings.leeway_secs;
        let mut ttl = self.settings.cache_ttl;
        if let Some(exp) = answer.get("exp") {
            let exp = exp.as_u64().ok_or(AuthnError::invalid(InvalidReason::ClaimFormat))?;
            if exp.saturating_add(leeway) <= now {
                return Err(AuthnError::invalid(InvalidReason::Expired));
            }
            ttl = ttl.min(Duration::from_secs(exp.saturating_sub(now)));
        }
        if let Some(nbf) = answer.get("nbf") {
            let nbf = nbf.as_u64().ok_or(AuthnError::invalid(InvalidReason::ClaimFormat))?;
            if nbf > now.saturating_add(leeway) {
                return Err(AuthnError::invalid(InvalidReason::NotYetValid));
            }
        }
        // `sub` is optional in RFC 7662; `username` is the next best stable name.
        let subject = ["sub", "username"]
            .iter()
            .find_map(|c| answer.get(*c).and_then(Value::as_str).filter(|s| !s.is_empty()))
            .ok_or(AuthnError::invalid(InvalidReason::MissingClaim))?
            .to_owned();
        Ok((Identity { subject, claims: answer, kind: IdentityKind::Introspected }, ttl))
    }

    fn cached(&self, hash: &TokenHash) -> Option<Identity> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(hash).filter(|(_, until)| Instant::now() < *until).map(|(identity, _)| identity.clone())
    }

    fn remember(&self, hash: TokenHash, identity: &Identity, ttl: Duration) {
        if ttl.is_zero() || self.settings.cache_entries == 0 {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if cache.len() >= self.settings.cache_entries {
            cache.retain(|_, (_, until)| now < *until);
        }
        // Still full of live answers: this one is simply not cached.
        if cache.len() < self.settings.cache_entries {
            cache.insert(hash, (identity.clone(), now + ttl));
        }
    }

    fn warn(&self, error: &fetch::FetchError) {
        let mut last = self.last_warn.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= self.settings.warn_every) {
            *last = Some(Instant::now());
            tracing::warn!(%error, url = %self.settings.url, "token introspection failed; opaque tokens are refused");
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn introspector(cache_entries: usize) -> Introspector {
        let settings = IntrospectSettings {
            url: Url::parse("https://issuer.example/introspect").unwrap(),
            issuer: "https://issuer.example".to_owned(),
            audience: Some("mcp".to_owned()),
            basic_auth: None,
            leeway_secs: 0,
            max_bytes: 1024,
            cache_entries,
            cache_ttl: Duration::from_secs(60),
            warn_every: Duration::from_secs(30),
        };
        Introspector::new(settings, reqwest::Client::new())
    }

    fn answer(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn judge_checks_active_iss_aud_exp() {
        let i = introspector(4);
        let later = unix_now() + 30;
        let (id, ttl) = i.judge(answer(serde_json::json!({"active": true, "sub": "u1", "exp": later}))).unwrap();
        assert_eq!((id.subject.as_str(), id.kind), ("u1", IdentityKind::Introspected));
        assert!(ttl <= Duration::from_secs(30));
        let (_, ttl) = i.judge(answer(serde_json::json!({"active": true, "username": "bob"}))).unwrap();
        assert_eq!(ttl, Duration::from_secs(60));
        let cases = [
            (serde_json::json!({"active": false, "sub": "u"}), AuthnError::Inactive),
            (serde_json::json!({"active": "true", "sub": "u"}), AuthnError::Inactive),
            (serde_json::json!({"sub": "u"}), AuthnError::Inactive),
            (
                serde_json::json!({"active": true, "sub": "u", "iss": "https://evil"}),
                AuthnError::invalid(InvalidReason::Issuer),
            ),
            (
                serde_json::json!({"active": true, "sub": "u", "aud": ["x"]}),
                AuthnError::invalid(InvalidReason::Audience),
            ),
            (serde_json::json!({"active": true, "sub": "u", "exp": 1}), AuthnError::invalid(InvalidReason::Expired)),
            (
                serde_json::json!({"active": true, "sub": "u", "nbf": later + 100}),
                AuthnError::invalid(InvalidReason::NotYetValid),
            ),
            (serde_json::json!({"active": true}), AuthnError::invalid(InvalidReason::MissingClaim)),
        ];
        for (a, want) in cases {
            assert_eq!(i.judge(answer(a.clone())).err(), Some(want), "{a}");
        }
        assert!(i.judge(answer(serde_json::json!({"active": true, "sub": "u", "aud": ["x", "mcp"]}))).is_ok());
    }

    #[test]
    fn cache_is_bounded_and_expires() {
        let i = introspector(2);
        let id = Identity::anonymous();
        i.remember([1; 32], &id, Duration::from_secs(60));
        i.remember([2; 32], &id, Duration::from_secs(60));
        i.remember([3; 32], &id, Duration::from_secs(60));
        assert!(i.cached(&[1; 32]).is_some());
        assert!(i.cached(&[3; 32]).is_none());
        i.remember([4; 32], &id, Duration::ZERO);
        assert!(i.cached(&[4; 32]).is_none());
        assert_eq!(i.cache.lock().unwrap().len(), 2);
    }

    #[test]
    fn basic_auth_encodes_id_and_secret() {
        assert_eq!(basic_auth("a", "b"), format!("Basic {}", STANDARD.encode("a:b")));
        assert_eq!(basic_auth("a:b", "c d"), format!("Basic {}", STANDARD.encode("a%3Ab:c+d")));
    }
}
