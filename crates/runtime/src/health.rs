//! Health checks of a workload's server, as ToolHive's transparent proxy does them: a probe
//! every interval (a stdio child must answer `ping`, a local HTTP server must accept a
//! connection), a quicker retry after a failure, and `unhealthy` only after a run of failures
//! (the threshold), `running` again at the first success. The probing itself is the caller's;
//! this module holds the settings and the verdict.

use std::time::Duration;

/// ToolHive's defaults (`pkg/transport/proxy/transparent`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_PING_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(5);
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;

/// Bounds on what the environment may set: a check every millisecond would be a busy loop,
/// one a day no check at all.
const MIN_DURATION: Duration = Duration::from_millis(50);
const MAX_DURATION: Duration = Duration::from_secs(3600);
const MAX_THRESHOLD: u32 = 1000;

/// The environment variables read, ToolHive's names first; `APIARY_HEALTH_*` wins when both are set.
const VARS: [(&str, &str); 4] = [
    ("TOOLHIVE_HEALTH_CHECK_INTERVAL", "APIARY_HEALTH_CHECK_INTERVAL"),
    ("TOOLHIVE_HEALTH_CHECK_PING_TIMEOUT", "APIARY_HEALTH_CHECK_PING_TIMEOUT"),
    ("TOOLHIVE_HEALTH_CHECK_RETRY_DELAY", "APIARY_HEALTH_CHECK_RETRY_DELAY"),
    ("TOOLHIVE_HEALTH_CHECK_FAILURE_THRESHOLD", "APIARY_HEALTH_CHECK_FAILURE_THRESHOLD"),
];

/// A health setting in the environment that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{var}={value:?}: {reason}")]
pub struct HealthSettingError {
    /// The variable.
    pub var: String,
    /// Its value.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// How often and how patiently a server is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    /// Between checks while healthy.
    pub interval: Duration,
    /// How long a probe may take.
    pub ping_timeout: Duration,
    /// Between checks after a failure.
    pub retry_delay: Duration,
    /// Consecutive failures that make the server unhealthy.
    pub failure_threshold: u32,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            interval: DEFAULT_INTERVAL,
            ping_timeout: DEFAULT_PING_TIMEOUT,
            retry_delay: DEFAULT_RETRY_DELAY,
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
        }
    }
}

impl HealthSettings {
    /// The defaults, overridden by the process environment.
    pub fn from_env() -> Result<Self, HealthSettingError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// The defaults, overridden by what `lookup` finds (durations as `10s`, `500ms`, `1m` or
    /// bare seconds; the threshold a count of at least 1).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, HealthSettingError> {
        let mut s = HealthSettings::default();
        for (i, (toolhive, apiary)) in VARS.iter().enumerate() {
            let Some((var, value)) =
                lookup(apiary).map(|v| (*apiary, v)).or_else(|| lookup(toolhive).map(|v| (*toolhive, v)))
            else {
                continue;
            };
            let err = |reason: &str| HealthSettingError {
                var: var.to_owned(),
                value: value.clone(),
                reason: reason.to_owned(),
            };
            if i == 3 {
                let n: u32 = value.trim().parse().map_err(|_| err("not a whole number"))?;
                if n == 0 || n > MAX_THRESHOLD {
                    return Err(err(&format!("must be between 1 and {MAX_THRESHOLD}")));
                }
                s.failure_threshold = n;
                continue;
            }
            let d = parse_duration(&value).ok_or_else(|| err("not a duration (10s, 500ms, 1m)"))?;
            if !(MIN_DURATION..=MAX_DURATION).contains(&d) {
                return Err(err("must be between 50ms and 1h"));
            }
            match i {
                0 => s.interval = d,
                1 => s.ping_timeout = d,
                _ => s.retry_delay = d,
            }
        }
        Ok(s)
    }
}

/// `10s`, `500ms`, `1m`, `1.5s` (Go's `time.ParseDuration` for one unit) or bare seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number.trim().parse().ok()?;
    if !value.is_finite() || value < 0.0 || value * scale > 1e9 {
        return None;
    }
    Some(Duration::from_secs_f64(value * scale))
}

/// What the checks have concluded so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No run of failures reaching the threshold (a failure below it is not shown).
    Healthy,
    /// `failures` consecutive failed checks; the last one's reason.
    Unhealthy { failures: u32, reason: String },
}

/// Folds check results into a verdict.
#[derive(Debug, Clone)]
pub struct HealthTracker {
    settings: HealthSettings,
    failures: u32,
    last_reason: String,
}

impl HealthTracker {
    pub fn new(settings: HealthSettings) -> Self {
        HealthTracker { settings, failures: 0, last_reason: String::new() }
    }

    /// Records one check and returns the verdict after it.
    pub fn record(&mut self, result: Result<(), String>) -> Verdict {
        match result {
            Ok(()) => self.failures = 0,
            Err(reason) => {
                self.failures = self.failures.saturating_add(1);
                self.last_reason = reason;
            }
        }
        self.verdict()
    }

    /// Forgets failures: the server was restarted, or is not there to check.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn verdict(&self) -> Verdict {
        if self.failures >= self.settings.failure_threshold {
            Verdict::Unhealthy { failures: self.failures, reason: self.last_reason.clone() }
        } else {
            Verdict::Healthy
        }
    }

    /// How long to wait before the next check.
    pub fn next_delay(&self) -> Duration {
        if self.failures > 0 { self.settings.retry_delay } else { self.settings.interval }
    }

    pub fn settings(&self) -> &HealthSettings {
        &self.settings
    }
}

/// The health check of a local HTTP server: its port accepts a connection within `timeout`.
pub async fn tcp_probe(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{host}:{port} refused the connection: {e}")),
        Err(_) => Err(format!("{host}:{port} did not accept a connection within {} ms", timeout.as_millis())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_parse_like_go_for_one_unit() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn the_environment_overrides_defaults_apiary_names_first() {
        let env = |k: &str| match k {
            "TOOLHIVE_HEALTH_CHECK_INTERVAL" => Some("3s".to_owned()),
            "APIARY_HEALTH_CHECK_INTERVAL" => Some("200ms".to_owned()),
            "TOOLHIVE_HEALTH_CHECK_FAILURE_THRESHOLD" => Some("2".to_owned()),
            _ => None,
        };
        let s = HealthSettings::from_lookup(env).unwrap();
        assert_eq!(s.interval, Duration::from_millis(200));
        assert_eq!(s.failure_threshold, 2);
        assert_eq!(s.ping_timeout, DEFAULT_PING_TIMEOUT);
        let bad = HealthSettings::from_lookup(|k| (k == "APIARY_HEALTH_CHECK_PING_TIMEOUT").then(|| "1ms".to_owned()));
        assert!(bad.unwrap_err().to_string().contains("APIARY_HEALTH_CHECK_PING_TIMEOUT"));
        let zero =
            HealthSettings::from_lookup(|k| (k == "TOOLHIVE_HEALTH_CHECK_FAILURE_THRESHOLD").then(|| "0".into()));
        assert!(zero.is_err());
    }

    #[test]
    fn unhealthy_after_the_threshold_and_healthy_at_the_first_success() {
        let settings = HealthSettings { failure_threshold: 3, ..HealthSettings::default() };
        let mut t = HealthTracker::new(settings);
        assert_eq!(t.record(Err("a".into())), Verdict::Healthy);
        assert_eq!(t.next_delay(), settings.retry_delay);
        assert_eq!(t.record(Err("b".into())), Verdict::Healthy);
        assert_eq!(t.record(Err("c".into())), Verdict::Unhealthy { failures: 3, reason: "c".into() });
        assert_eq!(t.record(Ok(())), Verdict::Healthy);
        assert_eq!(t.next_delay(), settings.interval);
    }
}
