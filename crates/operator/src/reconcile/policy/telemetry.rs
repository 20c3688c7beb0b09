//! `telemetryConfigRef`: the MCPTelemetryConfig of a parent turned into `RunConfig.telemetry`,
//! as ToolHive maps it: OTLP only when `openTelemetry.enabled`, the sampling rate from its
//! decimal string, `prometheus.enabled` for `/metrics`, and `service.name` from the reference or
//! else the parent's name. Sensitive headers reach the runner as environment variables read from
//! their Secrets. `/metrics` is served on the diagnostics port, which the pod and the proxy
//! Service then expose as port `metrics`.

use std::collections::BTreeMap;

use apiary_config::{RunConfig, SamplingRate, Source, TelemetryConfig};
use k8s_openapi::api::core::v1::EnvVar;

use super::{PolicyError, hash_spec, secret_env};
use crate::crd::common::TelemetryConfigRef;
use crate::crd::telemetryconfig::MCPTelemetryConfig;

/// Port of the diagnostics listener serving `/metrics` in the proxy pod (OpenTelemetry's
/// Prometheus default, as ToolHive's diagnostics port).
pub const METRICS_PORT: i32 = 9464;
/// Sampling rate when `tracing.samplingRate` is unset (the CRD's default, ToolHive's).
pub const DEFAULT_SAMPLING_RATE: &str = "0.05";
/// Prefix of the runner's variables holding sensitive header values (ToolHive's).
pub const HEADER_ENV_PREFIX: &str = "TOOLHIVE_OTEL_HEADER_";

const FIELD: &str = "spec.telemetryConfigRef";
const KIND: &str = "MCPTelemetryConfig";

/// What one MCPTelemetryConfig gives the proxy.
#[derive(Clone, Debug)]
pub struct Telemetry {
    /// `RunConfig.telemetry`.
    pub config: TelemetryConfig,
    /// The runner's secret variables (sensitive headers), as `secretKeyRef`s.
    pub env: Vec<EnvVar>,
    /// Container and Service port serving `/metrics`, when Prometheus is on.
    pub metrics_port: Option<i32>,
    /// sha256 of the MCPTelemetryConfig's spec.
    pub hash: String,
    /// Parts of the MCPTelemetryConfig Apiary does not apply (whose absence opens nothing).
    pub ignored: Vec<&'static str>,
}

/// The telemetry `r` asks for, from the MCPTelemetryConfig `found` (`None` when missing), for
/// the parent named `parent`.
pub fn telemetry(
    r: &TelemetryConfigRef,
    found: Option<&MCPTelemetryConfig>,
    parent: &str,
) -> Result<Telemetry, PolicyError> {
    let config = found.ok_or_else(|| PolicyError::Missing { field: FIELD, kind: KIND, name: r.name.clone() })?;
    let invalid = |reason: String| PolicyError::Invalid { field: FIELD, kind: KIND, name: r.name.clone(), reason };
    let spec = &config.spec;
    let service_name = r.service_name.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| parent.to_string());
    let mut t = TelemetryConfig {
        service_name: Some(service_name),
        prometheus_metrics_path: false,
        tracing_enabled: false,
        ..TelemetryConfig::default()
    };
    let mut env = Vec::new();
    let mut ignored = Vec::new();
    if let Some(otel) = spec.open_telemetry.as_ref().filter(|o| o.enabled == Some(true)) {
        if otel.metrics.as_ref().is_some_and(|m| m.enabled == Some(true)) {
            return Err(invalid(
                "openTelemetry.metrics.enabled: exporting metrics over OTLP is not supported by Apiary yet; \
                 set prometheus.enabled and scrape /metrics instead"
                    .into(),
            ));
        }
        // ToolHive's OTLP endpoint is `host:port[/path]`; a scheme given anyway is dropped, as there.
        let endpoint = otel.endpoint.as_deref().map(str::trim).unwrap_or_default();
        let endpoint =
            endpoint.strip_prefix("https://").or_else(|| endpoint.strip_prefix("http://")).unwrap_or(endpoint);
        if endpoint.is_empty() {
            return Err(invalid("openTelemetry.enabled without openTelemetry.endpoint".into()));
        }
        t.endpoint = Some(endpoint.to_string());
        t.insecure = otel.insecure.unwrap_or(false);
        t.headers = otel.headers.clone().unwrap_or_default();
        let tracing = otel.tracing.as_ref();
        t.tracing_enabled = tracing.is_some_and(|x| x.enabled == Some(true));
        let rate = tracing.and_then(|x| x.sampling_rate.as_deref()).unwrap_or(DEFAULT_SAMPLING_RATE);
        t.sampling_rate =
            rate.parse::<SamplingRate>().map_err(|e| invalid(format!("openTelemetry.tracing.samplingRate: {e}")))?;
        let mut headers_env = BTreeMap::new();
        for h in otel.sensitive_headers.iter().flatten() {
            let r = &h.secret_key_ref;
            if r.name.is_empty() || r.key.is_empty() {
                return Err(invalid(format!(
                    "openTelemetry.sensitiveHeaders {}: secretKeyRef needs both a Secret name and a key",
                    h.name
                )));
            }
            let var = header_env_name(&h.name);
            if headers_env.values().any(|v| *v == var) {
                return Err(invalid(format!("openTelemetry.sensitiveHeaders {}: named twice", h.name)));
            }
            env.push(secret_env(&var, r));
            headers_env.insert(h.name.clone(), var);
        }
        t.headers_env = headers_env;
        if otel.resource_attributes.as_ref().is_some_and(|a| !a.is_empty()) {
            ignored.push("spec.telemetryConfigRef (openTelemetry.resourceAttributes)");
        }
        if otel.ca_bundle_ref.is_some() {
            ignored.push("spec.telemetryConfigRef (openTelemetry.caBundleRef)");
        }
    }
    let metrics_port = spec.prometheus.as_ref().is_some_and(|p| p.enabled == Some(true)).then_some(METRICS_PORT);
    if let Some(port) = metrics_port {
        // In a pod the listener must take connections from the Service, not only loopback.
        t.prometheus_metrics_path = true;
        t.diagnostics_address = Some(format!("0.0.0.0:{port}"));
    }
    check(&t).map_err(invalid)?;
    Ok(Telemetry { config: t, env, metrics_port, hash: hash_spec(spec), ignored })
}

/// `TOOLHIVE_OTEL_HEADER_<NAME>`: the header name upper-cased, anything but letters and digits
/// turned into `_` (ToolHive's naming).
pub fn header_env_name(header: &str) -> String {
    let suffix: String =
        header.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("{HEADER_ENV_PREFIX}{suffix}")
}

/// The proxy's own validation of the telemetry section, on a stand-in RunConfig.
fn check(t: &TelemetryConfig) -> Result<(), String> {
    let mut probe = RunConfig::new("probe", Source::remote("https://probe.invalid/mcp"));
    probe.telemetry = t.clone();
    match probe.validate() {
        Ok(()) => Ok(()),
        Err(errors) => {
            let text: Vec<String> =
                errors.errors().iter().filter(|e| e.path.starts_with("telemetry")).map(ToString::to_string).collect();
            if text.is_empty() { Ok(()) } else { Err(text.join("; ")) }
        }
    }
}
