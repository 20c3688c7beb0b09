//! Metadata answers that are tokens (the RFC 8693 exchange) cached, so a caller's requests cost
//! one exchange per token lifetime rather than one each. Keyed by the SHA-256 of the whole call
//! (URL, headers, body: the subject token, the audience, the client secret), so neither a token
//! nor a secret is ever a map key in clear, and only an identical call reuses an answer.
//! Only answers with an `access_token` and a known lifetime (`expires_in` or the token's `exp`)
//! are kept, until shortly before that lifetime ends; other answers are never cached.
//! Concurrent identical calls make one request (single flight). Bounded in entries.
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::fetch::{FetchError, HttpCall, MetadataFetcher};

/// Bounds of the cache.
#[derive(Debug, Clone)]
pub struct CacheLimits {
    /// Most answers kept (default 10,000).
    pub max_entries: usize,
    /// Longest an answer is kept, whatever its token says (default 1 h).
    pub max_ttl: Duration,
    /// An answer is dropped this long before its token expires, so the token forwarded upstream
    /// is never about to expire (default 30 s); a token living shorter is not cached.
    pub expiry_margin: Duration,
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits {
            max_entries: 10_000,
            max_ttl: Duration::from_secs(60 * 60),
            expiry_margin: Duration::from_secs(30),
        }
    }
}

/// How the cache has been used, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Calls answered from the cache.
    pub hits: u64,
    /// Calls sent to the inner fetcher.
    pub fetches: u64,
    /// Answers currently kept.
    pub entries: usize,
}

pub(crate) type Key = [u8; 32];

struct Cached {
    value: Value,
    until: Instant,
}

/// One key: its answer, and the lock that makes concurrent misses wait for one fetch.
#[derive(Default)]
struct Slot {
    flight: tokio::sync::Mutex<()>,
    entry: Mutex<Option<Cached>>,
}

impl Slot {
    fn fresh(&self, now: Instant) -> Option<Value> {
        let entry = self.entry.lock().ok()?;
        entry.as_ref().filter(|c| c.until > now).map(|c| c.value.clone())
    }

    fn is_fresh(&self, now: Instant) -> bool {
        self.entry.lock().is_ok_and(|e| e.as_ref().is_some_and(|c| c.until > now))
    }
}

/// A [`MetadataFetcher`] that caches token answers of the fetcher it wraps.
pub struct CachingFetcher<F> {
    inner: F,
    limits: CacheLimits,
    slots: Mutex<HashMap<Key, Arc<Slot>>>,
    hits: AtomicU64,
    fetches: AtomicU64,
}

impl<F> std::fmt::Debug for CachingFetcher<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingFetcher").field("limits", &self.limits).field("stats", &self.stats()).finish()
    }
}

impl<F> CachingFetcher<F> {
    pub fn new(inner: F, limits: CacheLimits) -> Self {
        CachingFetcher {
            inner,
            limits,
            slots: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> CacheStats {
        let now = Instant::now();
        let entries = self.slots.lock().map(|s| s.values().filter(|slot| slot.is_fresh(now)).count()).unwrap_or(0);
        CacheStats { hits: self.hits.load(Ordering::Relaxed), fetches: self.fetches.load(Ordering::Relaxed), entries }
    }

    /// The slot of `key`, inserted if new. When the table is full it forgets expired and idle
    /// slots; if every slot is still in use the call gets a slot of its own (no caching).
    fn slot(&self, key: Key) -> Arc<Slot> {
        let Ok(mut slots) = self.slots.lock() else { return Arc::default() };
        if let Some(slot) = slots.get(&key) {
            return Arc::clone(slot);
        }
        if slots.len() >= self.limits.max_entries {
            let now = Instant::now();
            // A slot held elsewhere (strong count > 1) is being fetched or read: keep it.
            slots.retain(|_, s| Arc::strong_count(s) > 1 || s.is_fresh(now));
            if slots.len() >= self.limits.max_entries {
                let idle = slots.iter().find(|(_, s)| Arc::strong_count(s) == 1).map(|(k, _)| *k);
                match idle {
                    Some(k) => {
                        slots.remove(&k);
                    }
                    None => return Arc::default(),
                }
            }
        }
        let slot = Arc::<Slot>::default();
        slots.insert(key, Arc::clone(&slot));
        slot
    }

    /// How long an answer may be kept: only a token answer with a known lifetime.
    fn ttl(&self, value: &Value) -> Option<Duration> {
        let token = value.get("access_token")?.as_str()?;
        let from_expires_in = value.get("expires_in").and_then(Value::as_u64).map(Duration::from_secs);
        let from_exp = jwt_exp(token).map(|exp| {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(u64::MAX);
            Duration::from_secs(exp.saturating_sub(now))
        });
        let lifetime = match (from_expires_in, from_exp) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return None,
        };
        let ttl = lifetime.checked_sub(self.limits.expiry_margin)?.min(self.limits.max_ttl);
        (!ttl.is_zero()).then_some(ttl)
    }
}

/// The `exp` of a JWT, read without verification (the token came from the token endpoint the
/// policy names; its lifetime only bounds how long it is reused).
fn jwt_exp(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
}

/// SHA-256 over every part of the call, each length-prefixed so parts cannot run together.
pub(crate) fn key_of(call: &HttpCall) -> Key {
    let mut hash = Sha256::new();
    let mut part = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_be_bytes());
        hash.update(bytes);
    };
    part(call.method.as_str().as_bytes());
    part(call.url.as_bytes());
    for (name, value) in &call.headers {
        part(name.to_ascii_lowercase().as_bytes());
        part(value.as_bytes());
    }
    part(b"body");
    part(call.body.as_deref().unwrap_or_default());
    hash.finalize().into()
}

impl<F: MetadataFetcher> MetadataFetcher for CachingFetcher<F> {
    async fn fetch(&self, call: &HttpCall) -> Result<Value, FetchError> {
        let slot = self.slot(key_of(call));
        if let Some(value) = slot.fresh(Instant::now()) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(value);
        }
        let _flight = slot.flight.lock().await;
        // Another caller may have fetched it while this one waited.
        if let Some(value) = slot.fresh(Instant::now()) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(value);
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.inner.fetch(call).await;
        if let Ok(value) = &result
            && let Some(ttl) = self.ttl(value)
            && let Ok(mut entry) = slot.entry.lock()
        {
            *entry = Some(Cached { value: value.clone(), until: Instant::now() + ttl });
        }
        result
    }
}

/// Most answers one [`Memo`] remembers.
const MEMO_ENTRIES: usize = 16;

/// Every answer (cacheable or not, errors too) remembered for the span of one evaluation batch,
/// e.g. one `tools/list`: the tools of a list are decided on the same metadata, so a caller
/// whose exchange Keycloak refuses costs one refusal per list, not one per tool.
pub(crate) struct Memo<'a, F> {
    inner: &'a F,
    seen: Mutex<Vec<(Key, Result<Value, FetchError>)>>,
}

impl<'a, F> Memo<'a, F> {
    pub(crate) fn new(inner: &'a F) -> Self {
        Memo { inner, seen: Mutex::new(Vec::new()) }
    }
}

impl<F: MetadataFetcher> MetadataFetcher for Memo<'_, F> {
    async fn fetch(&self, call: &HttpCall) -> Result<Value, FetchError> {
        let key = key_of(call);
        if let Ok(seen) = self.seen.lock()
            && let Some((_, answer)) = seen.iter().find(|(k, _)| *k == key)
        {
            return answer.clone();
        }
        let answer = self.inner.fetch(call).await;
        if let Ok(mut seen) = self.seen.lock()
            && seen.len() < MEMO_ENTRIES
        {
            seen.push((key, answer.clone()));
        }
        answer
    }
}
