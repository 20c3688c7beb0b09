//! Health of each backend, shared by every vMCP instance: consecutive failures (from calls
//! and from the periodic check), a status (healthy / unhealthy after N failures / unknown),
//! and an optional circuit breaker (open after `failureThreshold` failures, so calls fail
//! fast; half-open after `timeout`, letting one trial through; closed again on a success).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::hub::BackendSpec;

/// Health settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    pub interval: Duration,
    /// Bound on one check.
    pub check_timeout: Duration,
    pub unhealthy_threshold: u32,
    /// `(failureThreshold, timeout)` when the breaker is on.
    pub breaker: Option<(u32, Duration)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Circuit {
    Closed,
    Open {
        since: Instant,
    },
    /// One trial is let through; `trial_at` says when, so a lost trial does not block forever.
    HalfOpen {
        trial_at: Instant,
    },
}

#[derive(Debug)]
struct State {
    failures: u32,
    checked: bool,
    circuit: Circuit,
    last_error: Option<String>,
    last_change: SystemTime,
}

/// One backend's health.
pub struct BackendHealth {
    pub name: String,
    pub url: String,
    /// How to reach it for a check (its headers are credentials: never printed).
    pub(crate) spec: BackendSpec,
    settings: HealthSettings,
    state: Mutex<State>,
}

impl std::fmt::Debug for BackendHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendHealth").field("name", &self.name).field("url", &self.url).finish_non_exhaustive()
    }
}

impl BackendHealth {
    pub fn new(spec: &BackendSpec, settings: HealthSettings) -> BackendHealth {
        BackendHealth {
            name: spec.name.clone(),
            url: spec.url.clone(),
            spec: spec.clone(),
            settings,
            state: Mutex::new(State {
                failures: 0,
                checked: false,
                circuit: Circuit::Closed,
                last_error: None,
                last_change: SystemTime::now(),
            }),
        }
    }

    /// Whether this record still describes `spec` under `settings` (else a reload starts afresh).
    pub(crate) fn describes(&self, spec: &BackendSpec, settings: HealthSettings) -> bool {
        self.spec.fingerprint == spec.fingerprint && self.settings == settings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a call may go to the backend now; the error is the sentence the client gets.
    pub fn admit(&self) -> Result<(), String> {
        let Some((threshold, timeout)) = self.settings.breaker else { return Ok(()) };
        let mut s = self.lock();
        let now = Instant::now();
        match s.circuit {
            Circuit::Closed => Ok(()),
            Circuit::Open { since } if now.duration_since(since) >= timeout => {
                s.circuit = Circuit::HalfOpen { trial_at: now };
                Ok(())
            }
            Circuit::HalfOpen { trial_at } if now.duration_since(trial_at) >= timeout => {
                s.circuit = Circuit::HalfOpen { trial_at: now };
                Ok(())
            }
            Circuit::Open { since } | Circuit::HalfOpen { trial_at: since } => {
                let left = timeout.saturating_sub(now.duration_since(since));
                Err(format!(
                    "backend {:?} is unavailable: its circuit breaker is open after {threshold} failures \
                     (last: {}); retrying in {}s",
                    self.name,
                    s.last_error.as_deref().unwrap_or("unknown"),
                    left.as_secs().max(1)
                ))
            }
        }
    }

    pub fn record_success(&self) {
        let mut s = self.lock();
        if s.failures > 0 || s.circuit != Circuit::Closed || !s.checked {
            s.last_change = SystemTime::now();
            if s.circuit != Circuit::Closed {
                tracing::info!(backend = %self.name, "the backend answers again; circuit closed");
            }
        }
        s.failures = 0;
        s.checked = true;
        s.circuit = Circuit::Closed;
    }

    pub fn record_failure(&self, why: &str) {
        let mut s = self.lock();
        s.failures = s.failures.saturating_add(1);
        s.checked = true;
        s.last_error = Some(why.chars().take(300).collect());
        if s.failures == self.settings.unhealthy_threshold {
            s.last_change = SystemTime::now();
            tracing::warn!(backend = %self.name, failures = s.failures, error = %why, "backend unhealthy");
        }
        if let Some((threshold, _)) = self.settings.breaker {
            let open = match s.circuit {
                Circuit::HalfOpen { .. } => true,
                Circuit::Closed => s.failures >= threshold,
                Circuit::Open { .. } => false,
            };
            if open {
                s.circuit = Circuit::Open { since: Instant::now() };
                s.last_change = SystemTime::now();
                tracing::warn!(backend = %self.name, failures = s.failures, "circuit breaker open");
            }
        }
    }

    /// `healthy`, `unhealthy` or `unknown`.
    pub fn status(&self) -> &'static str {
        let s = self.lock();
        if !s.checked {
            "unknown"
        } else if s.failures >= self.settings.unhealthy_threshold || matches!(s.circuit, Circuit::Open { .. }) {
            "unhealthy"
        } else if s.failures > 0 {
            "degraded"
        } else {
            "healthy"
        }
    }

    fn report(&self) -> Value {
        let status = self.status();
        let s = self.lock();
        let circuit = match s.circuit {
            Circuit::Closed => "closed",
            Circuit::Open { .. } => "open",
            Circuit::HalfOpen { .. } => "half-open",
        };
        let since = s.last_change.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        json!({
            "name": self.name,
            "url": self.url,
            "status": status,
            "circuitState": if self.settings.breaker.is_some() { circuit } else { "disabled" },
            "consecutiveFailures": s.failures,
            "lastError": s.last_error,
            "lastChangeUnix": since,
        })
    }
}

/// Every backend's health, plus which backends the latest list missed. One registry lives as
/// long as the vMCP: a reloaded config replaces its backends (keeping the health of those
/// that did not change).
#[derive(Debug, Default)]
pub struct HealthRegistry {
    backends: RwLock<BTreeMap<String, Arc<BackendHealth>>>,
    missing: Mutex<Vec<String>>,
}

impl HealthRegistry {
    pub fn new(backends: impl IntoIterator<Item = Arc<BackendHealth>>) -> HealthRegistry {
        let registry = HealthRegistry::default();
        registry.replace(backends);
        registry
    }

    fn map(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<BackendHealth>>> {
        self.backends.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes `backends` the registry's backends.
    pub fn replace(&self, backends: impl IntoIterator<Item = Arc<BackendHealth>>) {
        let map = backends.into_iter().map(|b| (b.name.clone(), b)).collect();
        *self.backends.write().unwrap_or_else(std::sync::PoisonError::into_inner) = map;
    }

    pub fn get(&self, name: &str) -> Option<Arc<BackendHealth>> {
        self.map().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<BackendHealth>> {
        self.map().values().cloned().collect()
    }

    /// Remembers the backends the latest aggregation had to leave out.
    pub fn set_missing(&self, missing: Vec<String>) {
        *self.missing.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = missing;
    }

    /// `/status`: overall state and every backend.
    pub fn status_report(&self) -> Value {
        let backends = self.map();
        let statuses: Vec<&str> = backends.values().map(|b| b.status()).collect();
        let overall = if statuses.iter().all(|s| *s == "healthy" || *s == "unknown") {
            "healthy"
        } else if statuses.iter().all(|s| *s == "unhealthy") {
            "unhealthy"
        } else {
            "degraded"
        };
        let missing = self.missing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        json!({
            "status": overall,
            "backends": backends.values().map(|b| b.report()).collect::<Vec<_>>(),
            "missingFromLastList": missing,
        })
    }

    /// `/api/backends/health`: a map from backend name to its health.
    pub fn health_report(&self) -> Value {
        let map: serde_json::Map<String, Value> = self.map().iter().map(|(n, b)| (n.clone(), b.report())).collect();
        json!({ "backends": map })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(name: &str, url: &str) -> BackendSpec {
        BackendSpec {
            name: name.into(),
            url: url.into(),
            timeout: Duration::from_secs(1),
            headers: vec![],
            transport: apiary_transport::client::Transport::StreamableHttp,
            reach: Default::default(),
            exchange: None,
            fingerprint: 0,
        }
    }

    fn settings(breaker: Option<(u32, Duration)>) -> HealthSettings {
        HealthSettings {
            interval: Duration::from_secs(30),
            check_timeout: Duration::from_secs(5),
            unhealthy_threshold: 2,
            breaker,
        }
    }

    #[test]
    fn unhealthy_after_the_threshold_and_healthy_after_a_success() {
        let h = BackendHealth::new(&spec("a", "http://x"), settings(None));
        assert_eq!(h.status(), "unknown");
        h.record_failure("refused");
        assert_eq!(h.status(), "degraded");
        h.record_failure("refused");
        assert_eq!(h.status(), "unhealthy");
        assert!(h.admit().is_ok(), "without a breaker calls are never refused");
        h.record_success();
        assert_eq!(h.status(), "healthy");
    }

    #[test]
    fn breaker_opens_fails_fast_then_lets_one_trial_through() {
        let h = BackendHealth::new(&spec("a", "http://x"), settings(Some((3, Duration::ZERO))));
        for _ in 0..3 {
            h.record_failure("connection refused");
        }
        // A zero timeout half-opens at once: one trial, which fails and re-opens.
        assert!(h.admit().is_ok());
        h.record_failure("connection refused");
        assert_eq!(h.report()["circuitState"], "open");
        h.record_success();
        assert_eq!(h.report()["circuitState"], "closed");

        let slow = BackendHealth::new(&spec("b", "http://x"), settings(Some((1, Duration::from_secs(3600)))));
        slow.record_failure("connection refused");
        let err = slow.admit().unwrap_err();
        assert!(err.contains("circuit breaker is open") && err.contains("connection refused"), "{err}");
    }

    #[test]
    fn reports_name_every_backend() {
        let a = Arc::new(BackendHealth::new(&spec("a", "http://a"), settings(None)));
        let b = Arc::new(BackendHealth::new(&spec("b", "http://b"), settings(None)));
        b.record_failure("x");
        b.record_failure("x");
        let r = HealthRegistry::new([a, b]);
        r.set_missing(vec!["b".into()]);
        let s = r.status_report();
        assert_eq!(s["status"], "degraded");
        assert_eq!(s["missingFromLastList"], json!(["b"]));
        assert_eq!(r.health_report()["backends"]["b"]["status"], "unhealthy");
    }
}
