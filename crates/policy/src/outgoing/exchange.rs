//! RFC 8693 token exchange: the caller's token is swapped at an STS for one addressed to the
//! upstream. Exchanged tokens are cached per caller token until shortly before they expire,
//! concurrent exchanges of one token share one request, and the cache is bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apiary_config::{SubjectTokenType, TokenExchangeConfig};
use base64::Engine;
use futures::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Most exchanged tokens kept.
const MAX_CACHED: usize = 4096;
/// An exchanged token is not used in its last seconds.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Lifetime assumed when the STS does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// Largest STS answer read.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// Why no exchanged token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The STS refused this caller's token (an OAuth error answer): the caller may not reach
    /// this upstream.
    #[error("the token exchange was refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused { status: u16, error: String, description: Option<String> },
    /// The STS could not be reached, failed, or answered something unusable.
    #[error("the token exchange failed: {0}")]
    Unavailable(String),
}

/// Why a token exchange cannot be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeConfigError {
    #[error("tokenExchange.tokenUrl {0:?} is not an https URL (plain HTTP only with insecureAllowHttp, for tests)")]
    NotHttps(String),
    #[error("tokenExchange.tokenUrl {0:?} is not a URL")]
    NotAUrl(String),
    #[error("tokenExchange needs a client secret (clientSecret or clientSecretEnv)")]
    NoSecret,
    #[error("tokenExchange.clientSecretEnv: the environment variable {0} is not set")]
    MissingEnv(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

#[derive(Clone)]
struct Cached {
    token: Arc<str>,
    until: Instant,
}

/// Exchanges caller tokens for upstream tokens.
pub struct TokenExchanger {
    client: reqwest::Client,
    token_url: String,
    basic: String,
    audience: Option<String>,
    scope: Option<String>,
    subject_token_type: &'static str,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
    /// One lock per caller token being exchanged right now (single flight).
    inflight: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for TokenExchanger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchanger").field("token_url", &self.token_url).field("audience", &self.audience).finish()
    }
}

impl TokenExchanger {
    /// Checks the configuration and reads the secret from the environment if it is named there.
    pub fn new(cfg: &TokenExchangeConfig) -> Result<TokenExchanger, ExchangeConfigError> {
        let url = url::Url::parse(&cfg.token_url).map_err(|_| ExchangeConfigError::NotAUrl(cfg.token_url.clone()))?;
        if url.scheme() != "https" && !(url.scheme() == "http" && cfg.insecure_allow_http) {
            return Err(ExchangeConfigError::NotHttps(cfg.token_url.clone()));
        }
        let secret = match (&cfg.client_secret, &cfg.client_secret_env) {
            (Some(s), _) => s.clone(),
            (None, Some(var)) => std::env::var(var).map_err(|_| ExchangeConfigError::MissingEnv(var.clone()))?,
            (None, None) => return Err(ExchangeConfigError::NoSecret),
        };
        // RFC 6749 §2.3.1: both parts are form-encoded before Basic encoding.
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(&cfg.client_id), enc(&secret)));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ExchangeConfigError::Client(e.to_string()))?;
        Ok(TokenExchanger {
            client,
            token_url: cfg.token_url.clone(),
            basic,
            audience: cfg.audience.clone(),
            scope: (!cfg.scopes.is_empty()).then(|| cfg.scopes.join(" ")),
            subject_token_type: match cfg.subject_token_type {
                SubjectTokenType::AccessToken => ACCESS_TOKEN_TYPE,
                SubjectTokenType::IdToken => ID_TOKEN_TYPE,
            },
            cache: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
        })
    }

    /// The upstream token for `subject` (the caller's token), from the cache or the STS.
    pub async fn exchange(&self, subject: &str) -> Result<Arc<str>, ExchangeError> {
        let key: [u8; 32] = Sha256::digest(subject.as_bytes()).into();
        if let Some(t) = self.cached(&key) {
            return Ok(t);
        }
        let gate = {
            let mut inflight = self.inflight.lock().map_err(|_| ExchangeError::Unavailable("lock poisoned".into()))?;
            Arc::clone(inflight.entry(key).or_default())
        };
        let _turn = gate.lock().await;
        // Whoever held the gate before us may have stored the answer.
        let result = match self.cached(&key) {
            Some(t) => Ok(t),
            None => self.fetch(subject).await.map(|(token, lifetime)| {
                self.store(key, Arc::clone(&token), lifetime);
                token
            }),
        };
        if let Ok(mut inflight) = self.inflight.lock()
            && Arc::strong_count(&gate) <= 2
        {
            inflight.remove(&key);
        }
        result
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Arc<str>> {
        let cache = self.cache.lock().ok()?;
        let c = cache.get(key)?;
        (c.until > Instant::now()).then(|| Arc::clone(&c.token))
    }

    fn store(&self, key: [u8; 32], token: Arc<str>, lifetime: Duration) {
        let Some(usable) = lifetime.checked_sub(EXPIRY_MARGIN).filter(|d| !d.is_zero()) else { return };
        let Ok(mut cache) = self.cache.lock() else { return };
        if cache.len() >= MAX_CACHED {
            let now = Instant::now();
            cache.retain(|_, c| c.until > now);
            if cache.len() >= MAX_CACHED {
                // Still full of live tokens: forget them all rather than grow (they are re-fetched).
                cache.clear();
            }
        }
        cache.insert(key, Cached { token, until: Instant::now() + usable });
    }

    /// The form of one exchange request (built apart: the serializer is not `Send`).
    fn form(&self, subject: &str) -> String {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", GRANT_TYPE)
            .append_pair("subject_token", subject)
            .append_pair("subject_token_type", self.subject_token_type)
            .append_pair("requested_token_type", ACCESS_TOKEN_TYPE);
        if let Some(a) = &self.audience {
            form.append_pair("audience", a);
        }
        if let Some(s) = &self.scope {
            form.append_pair("scope", s);
        }
        form.finish()
    }

    async fn fetch(&self, subject: &str) -> Result<(Arc<str>, Duration), ExchangeError> {
        let form = self.form(subject);
        let res = self
            .client
            .post(&self.token_url)
            .header(http::header::AUTHORIZATION, format!("Basic {}", self.basic))
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .body(form)
            .send()
            .await
            .map_err(|e| ExchangeError::Unavailable(format!("{}: {}", self.token_url, chain(&e))))?;
        let status = res.status().as_u16();
        let body = read_capped(res).await?;
        if !(200..300).contains(&status) {
            #[derive(Deserialize)]
            struct OAuthError {
                error: String,
                error_description: Option<String>,
            }
            return match serde_json::from_slice::<OAuthError>(&body) {
                Ok(e) if (400..500).contains(&status) => {
                    Err(ExchangeError::Refused { status, error: e.error, description: e.error_description })
                }
                _ => Err(ExchangeError::Unavailable(format!("the STS answered HTTP {status}"))),
            };
        }
        #[derive(Deserialize)]
        struct Answer {
            access_token: String,
            expires_in: Option<u64>,
        }
        let answer: Answer = serde_json::from_slice(&body)
            .map_err(|e| ExchangeError::Unavailable(format!("the STS answer is not a token response: {e}")))?;
        if answer.access_token.is_empty() {
            return Err(ExchangeError::Unavailable("the STS answered an empty access_token".into()));
        }
        let lifetime = answer.expires_in.map_or(DEFAULT_LIFETIME, Duration::from_secs);
        Ok((Arc::from(answer.access_token), lifetime))
    }
}

async fn read_capped(res: reqwest::Response) -> Result<Vec<u8>, ExchangeError> {
    let mut body = Vec::new();
    let mut stream = res.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ExchangeError::Unavailable(chain(&e)))?;
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ExchangeError::Unavailable(format!("the STS answer exceeds {MAX_ANSWER_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        text = format!("{text}: {s}");
        src = s.source();
    }
    text.chars().take(300).collect()
}
