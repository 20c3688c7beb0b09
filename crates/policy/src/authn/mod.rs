//! Who is this caller? Answers from the `Authorization: Bearer` header: a JWT is checked against
//! the OIDC issuer's keys (cached, see [`jwks`]); any other token is introspected (RFC 7662) when
//! an introspection endpoint is configured. Nothing here ever lets a token through unchecked:
//! when the issuer cannot be reached the answer is [`AuthnError::Unavailable`].

mod challenge;
mod error;
mod fetch;
mod introspect;
mod jwks;
mod jwt;
mod keys;
mod scopes;
mod verified;

use std::sync::Arc;
use std::time::Duration;

use apiary_config::OidcConfig;
use url::Url;

pub use error::{AuthnConfigError, AuthnError, InvalidReason};

use crate::identity::Identity;
use introspect::{IntrospectSettings, Introspector};
use jwks::{Jwks, JwksSettings, JwksSource};
use jwt::ClaimRules;

/// The leeway on `exp`/`nbf` is never more than this, whatever the options say.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// Tuning of an [`Authenticator`]. Every field has a bound; `Default` is what a proxy should use.
#[derive(Debug, Clone)]
pub struct AuthnOptions {
    /// Clock skew allowed on `exp` and `nbf` (default 60 s; capped at [`MAX_LEEWAY`]).
    pub leeway: Duration,
    /// Tokens longer than this are refused without being decoded (default 16 KiB).
    pub max_token_bytes: usize,
    /// Least time between two key fetches, and between retries while the issuer is down
    /// (default 30 s).
    pub jwks_min_refresh: Duration,
    /// How long keys are kept when the JWKS answer has no `Cache-Control: max-age` (default 1 h;
    /// like max-age, clamped to 5 min–24 h).
    pub jwks_ttl_default: Duration,
    /// Timeout of each request to the issuer (default 10 s).
    pub http_timeout: Duration,
    /// Largest discovery, JWKS or introspection answer read (default 1 MiB).
    pub max_response_bytes: usize,
    /// Most introspection answers cached at once (default 1024).
    pub introspection_cache_entries: usize,
    /// Longest an active introspection answer is cached (default 60 s; never past its `exp`).
    pub introspection_cache_ttl: Duration,
    /// CA certificates trusted for the issuer's HTTPS beside the system's roots (a private CA;
    /// default none).
    pub extra_roots: Vec<reqwest::Certificate>,
}

impl Default for AuthnOptions {
    fn default() -> Self {
        AuthnOptions {
            leeway: Duration::from_secs(60),
            max_token_bytes: 16 * 1024,
            jwks_min_refresh: Duration::from_secs(30),
            jwks_ttl_default: Duration::from_secs(60 * 60),
            http_timeout: Duration::from_secs(10),
            max_response_bytes: 1024 * 1024,
            introspection_cache_entries: 1024,
            introspection_cache_ttl: Duration::from_secs(60),
            extra_roots: Vec::new(),
        }
    }
}

/// Authenticates callers for one proxy. Cheap to share as `Arc<Authenticator>`.
pub struct Authenticator {
    issuer: String,
    /// Advertised: the configured scopes, then the required ones not among them.
    scopes: Vec<String>,
    /// Every token must grant these.
    required_scopes: Vec<String>,
    resource_url: Option<String>,
    max_token_bytes: usize,
    rules: ClaimRules,
    jwks: Jwks,
    introspector: Option<Introspector>,
    verified: verified::Verified,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuer", &self.issuer)
            .field("audience", &self.rules.audience)
            .field("introspection", &self.introspector.is_some())
            .finish_non_exhaustive()
    }
}

/// Parses a configured URL and insists on https unless plain http is allowed.
fn checked_url(field: &'static str, value: &str, allow_http: bool) -> Result<Url, AuthnConfigError> {
    let url =
        Url::parse(value).map_err(|source| AuthnConfigError::NotAUrl { field, value: value.to_owned(), source })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_http => Ok(url),
        _ => Err(AuthnConfigError::NotHttps { field, value: value.to_owned() }),
    }
}

impl Authenticator {
    /// Validates the config (https URLs unless `insecureAllowHttp`, parseable URLs); no network I/O.
    pub fn new(cfg: &OidcConfig, opts: AuthnOptions) -> Result<Authenticator, AuthnConfigError> {
        let allow_http = cfg.insecure_allow_http;
        if cfg.issuer.is_empty() {
            return Err(AuthnConfigError::Empty { field: "issuer" });
        }
        let issuer_url = checked_url("issuer", &cfg.issuer, allow_http)?;
        if cfg.audience.as_deref() == Some("") {
            return Err(AuthnConfigError::Empty { field: "audience" });
        }
        if cfg.client_secret.is_some() && cfg.client_id.is_none() {
            return Err(AuthnConfigError::SecretWithoutClient);
        }
        if let Some(resource) = &cfg.resource_url {
            Url::parse(resource).map_err(|source| AuthnConfigError::NotAUrl {
                field: "resourceUrl",
                value: resource.clone(),
                source,
            })?;
        }
        let source = match &cfg.jwks_url {
            Some(url) => JwksSource::Fixed(checked_url("jwksUrl", url, allow_http)?),
            None => {
                let well_known = format!("{}/.well-known/openid-configuration", cfg.issuer.trim_end_matches('/'));
                let discovery_url = Url::parse(&well_known).map_err(|source| AuthnConfigError::NotAUrl {
                    field: "issuer",
                    value: issuer_url.to_string(),
                    source,
                })?;
                JwksSource::Discover { issuer: cfg.issuer.clone(), discovery_url }
            }
        };
        let client = fetch::client(opts.http_timeout, &opts.extra_roots)
            .map_err(|e| AuthnConfigError::HttpClient(e.to_string()))?;
        let leeway_secs = opts.leeway.min(MAX_LEEWAY).as_secs();
        let introspector = match &cfg.introspection_url {
            None => None,
            Some(url) => {
                let settings = IntrospectSettings {
                    url: checked_url("introspectionUrl", url, allow_http)?,
                    issuer: cfg.issuer.clone(),
                    audience: cfg.audience.clone(),
                    basic_auth: cfg
                        .client_id
                        .as_deref()
                        .map(|id| introspect::basic_auth(id, cfg.client_secret.as_deref().unwrap_or_default())),
                    leeway_secs,
                    max_bytes: opts.max_response_bytes,
                    cache_entries: opts.introspection_cache_entries,
                    cache_ttl: opts.introspection_cache_ttl,
                    warn_every: opts.jwks_min_refresh,
                };
                Some(Introspector::new(settings, client.clone()))
            }
        };
        let settings = JwksSettings {
            min_refresh: opts.jwks_min_refresh,
            ttl_default: opts.jwks_ttl_default,
            max_bytes: opts.max_response_bytes,
            allow_http,
        };
        let mut scopes = cfg.scopes.clone();
        for r in &cfg.required_scopes {
            if r.is_empty() || r.contains(char::is_whitespace) {
                return Err(AuthnConfigError::BadScope { value: r.clone() });
            }
            if !scopes.contains(r) {
                scopes.push(r.clone());
            }
        }
        Ok(Authenticator {
            issuer: cfg.issuer.clone(),
            scopes,
            required_scopes: cfg.required_scopes.clone(),
            resource_url: cfg.resource_url.clone(),
            max_token_bytes: opts.max_token_bytes,
            rules: ClaimRules { issuer: cfg.issuer.clone(), audience: cfg.audience.clone(), leeway_secs },
            jwks: Jwks::new(source, settings, client),
            introspector,
            verified: verified::Verified::default(),
        })
    }

    /// The caller, or why not. `authorization` is the raw `Authorization` header value, if any.
    pub async fn authenticate(&self, authorization: Option<&http::HeaderValue>) -> Result<Identity, AuthnError> {
        self.authenticate_shared(authorization).await.map(|id| (*id).clone())
    }

    /// [`Self::authenticate`], sharing the identity: a JWT seen (and verified) in the last
    /// minute is not verified again (see `verified.rs`). A valid token without every required
    /// scope is [`AuthnError::InsufficientScope`] (a 403, not a 401).
    pub async fn authenticate_shared(
        &self,
        authorization: Option<&http::HeaderValue>,
    ) -> Result<Arc<Identity>, AuthnError> {
        let id = self.verify(authorization).await?;
        let missing = scopes::missing(&id, &self.required_scopes);
        if !missing.is_empty() {
            return Err(AuthnError::InsufficientScope { missing: missing.join(" ") });
        }
        Ok(id)
    }

    /// The caller the token names, once it is verified.
    async fn verify(&self, authorization: Option<&http::HeaderValue>) -> Result<Arc<Identity>, AuthnError> {
        let token = bearer_token(authorization, self.max_token_bytes)?;
        // Only JWTs that verified are remembered, so a token found is one: the shape check is
        // left for tokens seen for the first time.
        let key = verified::key(token);
        if let Some(id) = self.verified.get(&key) {
            return Ok(id);
        }
        if jwt::looks_like_jwt(token) {
            let id = Arc::new(jwt::verify(token, &self.jwks, &self.rules).await?);
            self.verified.put(key, Arc::clone(&id));
            return Ok(id);
        }
        match &self.introspector {
            Some(introspector) => introspector.check(token).await.map(Arc::new),
            None => Err(AuthnError::Malformed("token is not a JWT")),
        }
    }

    /// The `WWW-Authenticate` value for a 401 (RFC 6750 + RFC 9728):
    /// `Bearer realm="<issuer>", resource_metadata="<url>"`, plus `scope="..."` when scopes are
    /// configured, plus `error="invalid_token"` and `error_description` when a token was presented.
    /// `resource_metadata` is passed in by the proxy (it knows scheme, host and path).
    /// For [`AuthnError::InsufficientScope`] (a 403) it is `error="insufficient_scope"` with
    /// `scope` the required scopes (RFC 6750 §3.1).
    pub fn challenge(&self, err: &AuthnError, resource_metadata: Option<&str>) -> http::HeaderValue {
        let scopes = if err.is_forbidden() { &self.required_scopes } else { &self.scopes };
        challenge::challenge(&self.issuer, scopes, err, resource_metadata)
    }

    /// RFC 9728 protected-resource metadata when `resourceUrl` is set, else None.
    pub fn resource_metadata(&self) -> Option<serde_json::Value> {
        let resource = self.resource_url.as_deref()?;
        let jwks_uri = self.jwks.configured_url().map(Url::as_str);
        Some(challenge::resource_metadata(resource, &self.issuer, &self.scopes, jwks_uri))
    }

    /// Loads keys now (optional warm-up at proxy start); errors are logged, not fatal.
    pub async fn warm_up(&self) {
        self.jwks.warm_up().await;
    }

    /// The configured issuer (the challenge's realm).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
}

/// The token of a `Bearer` header: scheme case-insensitive (RFC 9110 §11.1), one or more spaces.
fn bearer_token(authorization: Option<&http::HeaderValue>, max_bytes: usize) -> Result<&str, AuthnError> {
    let Some(value) = authorization else {
        return Err(AuthnError::Missing);
    };
    let bytes = value.as_bytes();
    let scheme_len = "Bearer ".len();
    if bytes.len() < scheme_len || !bytes[..scheme_len].eq_ignore_ascii_case(b"bearer ") {
        return Err(AuthnError::Missing);
    }
    // The cap is checked on the raw value, before anything is decoded.
    if bytes.len() > max_bytes.saturating_add(scheme_len + 16) {
        return Err(AuthnError::TooLarge);
    }
    // The common case in one pass: surrounding spaces and tabs off, then only visible ASCII
    // other than space (what the checks below accept). Anything else takes the checks below,
    // which say what is wrong.
    let rest = &bytes[scheme_len..];
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = rest.iter().position(|b| !blank(b)).unwrap_or(rest.len());
    let end = rest.iter().rposition(|b| !blank(b)).map_or(start, |i| i + 1);
    let candidate = &rest[start..end];
    // A fold without an early exit, so the compiler can check many bytes at a time.
    let visible = candidate.iter().fold(true, |ok, b| ok & (b.wrapping_sub(0x21) < 0x5e));
    if visible
        && !candidate.is_empty()
        && candidate.len() <= max_bytes
        && let Ok(token) = std::str::from_utf8(candidate)
    {
        return Ok(token);
    }
    let token = value.to_str().map_err(|_| AuthnError::Malformed("token is not ASCII"))?[scheme_len..].trim();
    if token.len() > max_bytes {
        return Err(AuthnError::TooLarge);
    }
    // `to_str` let through visible ASCII and tabs only: the bytes are the characters.
    if token.is_empty() || token.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(AuthnError::Malformed("not a single bearer token"));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn header(s: &str) -> http::HeaderValue {
        http::HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn bearer_header_forms() {
        assert_eq!(bearer_token(None, 100), Err(AuthnError::Missing));
        assert_eq!(bearer_token(Some(&header("Basic dXNlcjpwdw==")), 100), Err(AuthnError::Missing));
        assert_eq!(bearer_token(Some(&header("Bearer")), 100), Err(AuthnError::Missing));
        assert_eq!(bearer_token(Some(&header("bearer  abc ")), 100), Ok("abc"));
        assert_eq!(bearer_token(Some(&header("BEARER abc")), 100), Ok("abc"));
        assert!(matches!(bearer_token(Some(&header("Bearer a b")), 100), Err(AuthnError::Malformed(_))));
        assert!(matches!(bearer_token(Some(&header("Bearer  ")), 100), Err(AuthnError::Malformed(_))));
        assert_eq!(bearer_token(Some(&header(&format!("Bearer {}", "a".repeat(101)))), 100), Err(AuthnError::TooLarge));
        assert_eq!(bearer_token(Some(&header(&format!("Bearer {}", "a".repeat(100)))), 100).map(str::len), Ok(100));
        let non_ascii = http::HeaderValue::from_bytes(b"Bearer \xff").unwrap();
        assert!(matches!(bearer_token(Some(&non_ascii), 100), Err(AuthnError::Malformed(_))));
        assert_eq!(bearer_token(Some(&header("Bearer \tabc~!\t ")), 100), Ok("abc~!"));
        assert!(matches!(bearer_token(Some(&header("Bearer a\tb")), 100), Err(AuthnError::Malformed(_))));
        let inner = http::HeaderValue::from_bytes(b"Bearer ab\x80c").unwrap();
        assert_eq!(bearer_token(Some(&inner), 100), Err(AuthnError::Malformed("token is not ASCII")));
    }

    #[test]
    fn the_one_pass_check_accepts_what_the_full_checks_accept() {
        // Every header of up to four bytes after the scheme, from an alphabet with the edges of
        // each check: the answer is the one of the checks alone (the fast path skipped).
        let full = |value: &http::HeaderValue, max: usize| -> Result<String, AuthnError> {
            let token = value.to_str().map_err(|_| AuthnError::Malformed("token is not ASCII"))?[7..].trim();
            if token.len() > max {
                return Err(AuthnError::TooLarge);
            }
            if token.is_empty() || token.bytes().any(|b| b.is_ascii_whitespace()) {
                return Err(AuthnError::Malformed("not a single bearer token"));
            }
            Ok(token.to_owned())
        };
        let alphabet = [b' ', b'\t', b'!', b'a', b'~', 0x7f, 0x80, 0xff];
        let mut tail = Vec::new();
        for n in 0..=4u32 {
            for mut i in 0..alphabet.len().pow(n) {
                tail.clear();
                for _ in 0..n {
                    tail.push(alphabet[i % alphabet.len()]);
                    i /= alphabet.len();
                }
                let Ok(value) = http::HeaderValue::from_bytes(&[b"Bearer ".as_slice(), &tail].concat()) else {
                    continue;
                };
                for max in [2, 100] {
                    let got = bearer_token(Some(&value), max).map(str::to_owned);
                    assert_eq!(got, full(&value, max), "{tail:?}");
                }
            }
        }
    }

    fn cfg(issuer: &str) -> OidcConfig {
        OidcConfig::new(issuer)
    }

    #[test]
    fn config_is_validated_without_io() {
        let new = |c: &OidcConfig| Authenticator::new(c, AuthnOptions::default());
        assert!(new(&cfg("https://idp.example/realms/x")).is_ok());
        assert!(matches!(new(&cfg("")), Err(AuthnConfigError::Empty { .. })));
        assert!(matches!(new(&cfg("not a url")), Err(AuthnConfigError::NotAUrl { .. })));
        assert!(matches!(new(&cfg("http://idp")), Err(AuthnConfigError::NotHttps { .. })));
        let mut c = cfg("http://idp");
        c.insecure_allow_http = true;
        assert!(new(&c).is_ok());
        let mut c = cfg("https://idp");
        c.jwks_url = Some("http://idp/jwks".to_owned());
        assert!(matches!(new(&c), Err(AuthnConfigError::NotHttps { field: "jwksUrl", .. })));
        let mut c = cfg("https://idp");
        c.introspection_url = Some("ftp://idp/i".to_owned());
        assert!(matches!(new(&c), Err(AuthnConfigError::NotHttps { field: "introspectionUrl", .. })));
        let mut c = cfg("https://idp");
        c.client_secret = Some("s".to_owned());
        assert!(matches!(new(&c), Err(AuthnConfigError::SecretWithoutClient)));
        let mut c = cfg("https://idp");
        c.audience = Some(String::new());
        assert!(matches!(new(&c), Err(AuthnConfigError::Empty { field: "audience" })));
        let mut c = cfg("https://idp");
        c.resource_url = Some("::".to_owned());
        assert!(matches!(new(&c), Err(AuthnConfigError::NotAUrl { field: "resourceUrl", .. })));
    }

    #[test]
    fn required_scopes_are_words_and_are_advertised() {
        let mut c = cfg("https://idp");
        c.required_scopes = vec!["mcp tools".to_owned()];
        assert!(matches!(Authenticator::new(&c, AuthnOptions::default()), Err(AuthnConfigError::BadScope { .. })));
        c.scopes = vec!["openid".to_owned(), "mcp:tools".to_owned()];
        c.required_scopes = vec!["mcp:tools".to_owned(), "mcp:admin".to_owned()];
        c.resource_url = Some("https://mcp.example/mcp".to_owned());
        let a = Authenticator::new(&c, AuthnOptions::default()).unwrap();
        let doc = a.resource_metadata().unwrap();
        assert_eq!(doc["scopes_supported"], serde_json::json!(["openid", "mcp:tools", "mcp:admin"]));
    }

    #[test]
    fn metadata_only_with_a_resource_url() {
        let mut c = cfg("https://idp");
        let a = Authenticator::new(&c, AuthnOptions::default()).unwrap();
        assert_eq!(a.resource_metadata(), None);
        c.resource_url = Some("https://mcp.example/mcp".to_owned());
        c.jwks_url = Some("https://idp/jwks".to_owned());
        let a = Authenticator::new(&c, AuthnOptions::default()).unwrap();
        let doc = a.resource_metadata().unwrap();
        assert_eq!(doc["resource"], "https://mcp.example/mcp");
        assert_eq!(doc["authorization_servers"], serde_json::json!(["https://idp"]));
        assert_eq!(doc["jwks_uri"], "https://idp/jwks");
    }
}
