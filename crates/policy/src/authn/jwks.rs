//! The issuer's keys, cached. Loaded on first use (or warm-up), refreshed when their TTL runs out
//! and when a token names an unknown `kid`. Fetches are single-flight (concurrent misses share one)
//! and at least `min_refresh` apart, so tokens with random kids cannot make us hammer the issuer:
//! an unknown kid costs at most one refetch, then is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::Algorithm;
use url::Url;

use super::error::{AuthnError, InvalidReason};
use super::fetch::{self, FetchError};
use super::keys::{KeySet, Lookup, VerifyKey};

/// Cache-Control max-age is clamped to this range.
const TTL_MIN: Duration = Duration::from_secs(5 * 60);
const TTL_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// Where the keys come from.
pub(crate) enum JwksSource {
    /// `jwksUrl` from the config.
    Fixed(Url),
    /// `<issuer>/.well-known/openid-configuration` → `jwks_uri`.
    Discover { issuer: String, discovery_url: Url },
}

pub(crate) struct JwksSettings {
    pub min_refresh: Duration,
    pub ttl_default: Duration,
    pub max_bytes: usize,
    pub allow_http: bool,
}

/// State only the fetching task touches (under the single-flight lock).
struct FetchState {
    /// The `jwks_uri` discovery gave, until a fetch from it fails.
    discovered: Option<Url>,
}

pub(crate) struct Jwks {
    source: JwksSource,
    settings: JwksSettings,
    client: reqwest::Client,
    current: ArcSwapOption<KeySet>,
    /// Completed fetch attempts; a waiter that sees it moved knows someone fetched for it.
    attempts: AtomicU64,
    /// When the last attempt started; read without the fetch lock to compute `retry_after`.
    last_attempt: std::sync::Mutex<Option<Instant>>,
    /// The single-flight lock.
    fetch: tokio::sync::Mutex<FetchState>,
}

impl Jwks {
    pub(crate) fn new(source: JwksSource, settings: JwksSettings, client: reqwest::Client) -> Jwks {
        Jwks {
            source,
            settings,
            client,
            current: ArcSwapOption::empty(),
            attempts: AtomicU64::new(0),
            last_attempt: std::sync::Mutex::new(None),
            fetch: tokio::sync::Mutex::new(FetchState { discovered: None }),
        }
    }

    /// The `jwks_uri` in use when it is known without I/O (configured, or already discovered).
    pub(crate) fn configured_url(&self) -> Option<&Url> {
        match &self.source {
            JwksSource::Fixed(url) => Some(url),
            JwksSource::Discover { .. } => None,
        }
    }

    /// Loads the keys if none are loaded (warm-up).
    pub(crate) async fn warm_up(&self) {
        if self.current.load().is_none() {
            let observed = self.attempts.load(Ordering::Acquire);
            let guard = self.fetch.lock().await;
            self.refresh_locked(guard, observed).await;
        }
    }

    /// The key that may verify a token with this `kid` and `alg`, fetching keys as needed.
    pub(crate) async fn resolve(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<VerifyKey>, AuthnError> {
        let observed = self.attempts.load(Ordering::Acquire);
        match self.current.load_full() {
            None => {
                let guard = self.fetch.lock().await;
                self.refresh_locked(guard, observed).await;
            }
            Some(set) if set.is_stale() => {
                // Refresh, but only one caller waits for it: the others keep using the old keys.
                if let Ok(guard) = self.fetch.try_lock() {
                    self.refresh_locked(guard, observed).await;
                }
            }
            Some(set) => match set.lookup(kid, alg) {
                Lookup::NotFound => {
                    let guard = self.fetch.lock().await;
                    self.refresh_locked(guard, observed).await;
                }
                other => return from_lookup(other),
            },
        }
        match self.current.load_full() {
            None => Err(AuthnError::Unavailable { retry_after_secs: self.retry_after_secs() }),
            Some(set) => from_lookup(set.lookup(kid, alg)),
        }
    }

    /// Seconds until the next fetch may be tried (at least 1).
    fn retry_after_secs(&self) -> u64 {
        let last = *self.last_attempt.lock().unwrap_or_else(|e| e.into_inner());
        let left = last.map_or(Duration::ZERO, |t| self.settings.min_refresh.saturating_sub(t.elapsed()));
        left.as_secs_f64().ceil().max(1.0) as u64
    }

    /// Fetches the keys unless another caller already did while we waited for the lock, or the
    /// last attempt was less than `min_refresh` ago.
    async fn refresh_locked(&self, mut state: tokio::sync::MutexGuard<'_, FetchState>, observed: u64) {
        if self.attempts.load(Ordering::Acquire) != observed {
            return;
        }
        {
            let mut last = self.last_attempt.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < self.settings.min_refresh) {
                return;
            }
            *last = Some(Instant::now());
        }
        match self.fetch_keys(&mut state).await {
            Ok(set) => {
                tracing::debug!(keys = set.len(), "loaded the issuer's signing keys");
                self.current.store(Some(Arc::new(set)));
            }
            Err(error) => {
                // One line per failed attempt; attempts are at least min_refresh apart.
                let stale = self.current.load().is_some();
                tracing::warn!(%error, keeping_old_keys = stale, "could not load the issuer's signing keys");
            }
        }
        self.attempts.fetch_add(1, Ordering::AcqRel);
    }

    async fn fetch_keys(&self, state: &mut FetchState) -> Result<KeySet, JwksError> {
        let url = match (&self.source, &state.discovered) {
            (JwksSource::Fixed(url), _) => url.clone(),
            (JwksSource::Discover { .. }, Some(url)) => url.clone(),
            (JwksSource::Discover { issuer, discovery_url }, None) => {
                let url = self.discover(issuer, discovery_url).await?;
                state.discovered = Some(url.clone());
                url
            }
        };
        let result = self.fetch_set(&url).await;
        if result.is_err() {
            // The issuer may have moved its keys: discover again next time.
            state.discovered = None;
        }
        result
    }

    async fn discover(&self, issuer: &str, discovery_url: &Url) -> Result<Url, JwksError> {
        let at = discovery_url.to_string();
        let fetched = fetch::send(self.client.get(discovery_url.clone()), self.settings.max_bytes)
            .await
            .map_err(|source| JwksError::Fetch { url: at.clone(), source })?;
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let doc: Discovery = serde_json::from_slice(&fetched.body)
            .map_err(|e| JwksError::Fetch { url: at.clone(), source: FetchError::Json(e) })?;
        if doc.issuer != issuer {
            return Err(JwksError::Content { url: at, what: "its issuer is not the configured issuer" });
        }
        let url =
            Url::parse(&doc.jwks_uri).map_err(|_| JwksError::Content { url: at.clone(), what: "bad jwks_uri" })?;
        if !(url.scheme() == "https" || (self.settings.allow_http && url.scheme() == "http")) {
            return Err(JwksError::Content { url: at, what: "jwks_uri is not https" });
        }
        Ok(url)
    }

    async fn fetch_set(&self, url: &Url) -> Result<KeySet, JwksError> {
        let at = url.to_string();
        let fetched = fetch::send(self.client.get(url.clone()), self.settings.max_bytes)
            .await
            .map_err(|source| JwksError::Fetch { url: at.clone(), source })?;
        let ttl = max_age(&fetched.headers).unwrap_or(self.settings.ttl_default).clamp(TTL_MIN, TTL_MAX);
        KeySet::parse(&fetched.body, ttl).map_err(|what| JwksError::Content { url: at, what })
    }
}

fn from_lookup(lookup: Lookup) -> Result<Arc<VerifyKey>, AuthnError> {
    match lookup {
        Lookup::Found(key) => Ok(key),
        Lookup::NotUsable => Err(AuthnError::invalid(InvalidReason::KeyNotUsable)),
        Lookup::Ambiguous => Err(AuthnError::invalid(InvalidReason::AmbiguousKey)),
        Lookup::NotFound => Err(AuthnError::invalid(InvalidReason::UnknownKey)),
    }
}

/// `Cache-Control: max-age=N`, if given.
fn max_age(headers: &http::HeaderMap) -> Option<Duration> {
    headers.get_all(http::header::CACHE_CONTROL).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        v.split(',').find_map(|d| {
            let (name, value) = d.trim().split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("max-age") {
                return None;
            }
            value.trim().trim_matches('"').parse::<u64>().ok().map(Duration::from_secs)
        })
    })
}

/// Why loading keys failed (logged, never shown to callers).
#[derive(Debug, thiserror::Error)]
enum JwksError {
    #[error("{url}: {source}")]
    Fetch { url: String, source: FetchError },
    #[error("{url}: {what}")]
    Content { url: String, what: &'static str },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(values: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append(http::header::CACHE_CONTROL, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn max_age_is_read_from_any_cache_control_directive() {
        assert_eq!(max_age(&headers(&["public, max-age=600"])), Some(Duration::from_secs(600)));
        assert_eq!(max_age(&headers(&["no-cache", "Max-Age=\"7\""])), Some(Duration::from_secs(7)));
        assert_eq!(max_age(&headers(&["no-store"])), None);
        assert_eq!(max_age(&headers(&["max-age=-1"])), None);
        assert_eq!(max_age(&http::HeaderMap::new()), None);
    }
}
