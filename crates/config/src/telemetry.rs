//! What the proxy reports about itself: Prometheus metrics on a diagnostics listener and
//! OTLP traces, with ToolHive's `--otel-*` settings.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where `/metrics` is served when nothing else is configured (OpenTelemetry's Prometheus
/// default). When it is busy the proxy takes a free port instead.
pub const DEFAULT_DIAGNOSTICS_ADDRESS: &str = "127.0.0.1:9464";

/// ToolHive's CLI default sampling rate.
pub const DEFAULT_SAMPLING_RATE: f64 = 0.1;

/// Most OTLP headers accepted (`--otel-headers`).
pub const MAX_OTEL_HEADERS: usize = 32;

/// Metrics and traces of one proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Address (`ip:port`) of the diagnostics listener that serves `/metrics`. Unset:
    /// `127.0.0.1:9464`, or a free loopback port when 9464 is busy. Set: exactly that address
    /// (port 0 picks a free one); failing to bind it stops the proxy from starting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnostics_address: Option<String>,
    /// Serve Prometheus text at `GET /metrics` on the diagnostics listener
    /// (`--otel-enable-prometheus-metrics-path`). Default on; off: no diagnostics listener.
    pub prometheus_metrics_path: bool,
    /// OTLP/HTTP collector: `host:port[/path]` as in ToolHive (HTTPS unless `insecure`), or a
    /// full `http(s)://` URL. Traces go to `<endpoint>/v1/traces`. Unset: no export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Headers sent with every export (e.g. an API key). Never logged.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Headers whose value is read at start from an environment variable of the proxy: header
    /// name → variable name (the operator sets them from Secrets). Never logged.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers_env: BTreeMap<String, String>,
    /// Plain HTTP to a `host:port` endpoint.
    pub insecure: bool,
    /// `service.name` of exported spans. Unset: `apiary-<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    /// Fraction of new traces sampled, 0.0–1.0 (a caller's sampled parent is always followed).
    pub sampling_rate: SamplingRate,
    /// Export traces when an endpoint is set.
    pub tracing_enabled: bool,
    /// Export metrics over OTLP. Not supported yet: must stay off (scrape `/metrics` instead).
    pub metrics_enabled: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            diagnostics_address: None,
            prometheus_metrics_path: true,
            endpoint: None,
            headers: BTreeMap::new(),
            headers_env: BTreeMap::new(),
            insecure: false,
            service_name: None,
            sampling_rate: SamplingRate::default(),
            tracing_enabled: true,
            metrics_enabled: false,
        }
    }
}

impl TelemetryConfig {
    /// True when every field has its default.
    pub fn is_default(&self) -> bool {
        *self == TelemetryConfig::default()
    }

    /// True when spans are exported.
    pub fn exports_traces(&self) -> bool {
        self.tracing_enabled && self.endpoint.is_some()
    }

    /// The URL spans are posted to: `endpoint` with a scheme (`https`, or `http` when
    /// `insecure`) and `/v1/traces` appended unless it already ends so.
    pub fn traces_url(&self) -> Option<String> {
        let endpoint = self.endpoint.as_deref()?.trim_end_matches('/');
        let base = if endpoint.contains("://") {
            endpoint.to_owned()
        } else if self.insecure {
            format!("http://{endpoint}")
        } else {
            format!("https://{endpoint}")
        };
        Some(if base.ends_with("/v1/traces") { base } else { format!("{base}/v1/traces") })
    }
}

/// A sampling ratio in 0.0–1.0; anything else (or NaN) is refused when read.
#[derive(Debug, Clone, Copy, JsonSchema)]
#[schemars(transparent)]
pub struct SamplingRate(#[schemars(range(min = 0.0, max = 1.0))] f64);

impl SamplingRate {
    /// The ratio, if `v` is one (finite, 0.0–1.0).
    pub fn new(v: f64) -> Option<SamplingRate> {
        (v.is_finite() && (0.0..=1.0).contains(&v)).then_some(SamplingRate(v))
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl Default for SamplingRate {
    fn default() -> Self {
        SamplingRate(DEFAULT_SAMPLING_RATE)
    }
}

// NaN is never constructed, so equality is total.
impl PartialEq for SamplingRate {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}
impl Eq for SamplingRate {}

impl fmt::Display for SamplingRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for SamplingRate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v: f64 = s.trim().parse().map_err(|_| format!("{s:?} is not a number from 0.0 to 1.0"))?;
        SamplingRate::new(v).ok_or_else(|| format!("{s} is not a sampling rate from 0.0 to 1.0"))
    }
}

impl Serialize for SamplingRate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for SamplingRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = f64::deserialize(d)?;
        SamplingRate::new(v)
            .ok_or_else(|| serde::de::Error::custom(format!("{v} is not a sampling rate from 0.0 to 1.0")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn traces_url_adds_scheme_and_path() {
        let mut t = TelemetryConfig { endpoint: Some("collector:4318".into()), ..TelemetryConfig::default() };
        assert_eq!(t.traces_url().as_deref(), Some("https://collector:4318/v1/traces"));
        t.insecure = true;
        assert_eq!(t.traces_url().as_deref(), Some("http://collector:4318/v1/traces"));
        t.endpoint = Some("http://127.0.0.1:4318/v1/traces".into());
        assert_eq!(t.traces_url().as_deref(), Some("http://127.0.0.1:4318/v1/traces"));
    }

    #[test]
    fn sampling_rate_is_bounded() {
        assert!("0.5".parse::<SamplingRate>().is_ok());
        assert!("1.5".parse::<SamplingRate>().is_err());
        assert!("NaN".parse::<SamplingRate>().is_err());
        assert!(serde_json::from_str::<SamplingRate>("-0.1").is_err());
        assert_eq!(serde_json::from_str::<SamplingRate>("1").unwrap().get(), 1.0);
    }

    #[test]
    fn headers_from_the_environment_need_an_endpoint_a_header_name_and_one_source() {
        let mut cfg = crate::RunConfig::new(
            "x",
            crate::Source::Remote(crate::RemoteSource { url: "https://example.com/mcp".into() }),
        );
        cfg.telemetry.headers_env.insert("x-api-key".into(), "OTEL_KEY".into());
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("telemetry.headersEnv"), "{err}");
        cfg.telemetry.endpoint = Some("collector:4318".into());
        cfg.validate().unwrap();
        cfg.telemetry.headers.insert("X-Api-Key".into(), "v".into());
        cfg.telemetry.headers_env.insert("bad header".into(), String::new());
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("telemetry.headersEnv.x-api-key: is also in telemetry.headers"), "{err}");
        assert!(err.contains("telemetry.headersEnv.bad header: is not an HTTP header name"), "{err}");
        assert!(err.contains("is not an environment variable name"), "{err}");
        let text = serde_json::to_string(&cfg.telemetry).unwrap();
        assert!(text.contains(r#""headersEnv":{"#), "{text}");
    }

    #[test]
    fn validation_names_bad_fields() {
        let mut cfg = crate::RunConfig::new(
            "x",
            crate::Source::Remote(crate::RemoteSource { url: "https://example.com/mcp".into() }),
        );
        cfg.telemetry.endpoint = Some("http://collector:4318".into());
        cfg.telemetry.diagnostics_address = Some("nowhere".into());
        cfg.telemetry.metrics_enabled = true;
        cfg.telemetry.headers.insert("bad header".into(), "secret-value".into());
        let err = cfg.validate().unwrap_err().to_string();
        for path in [
            "telemetry.endpoint",
            "telemetry.diagnosticsAddress",
            "telemetry.metricsEnabled",
            "telemetry.headers.bad header",
        ] {
            assert!(err.contains(path), "{path} missing in {err}");
        }
        assert!(!err.contains("secret-value"));
    }
}
