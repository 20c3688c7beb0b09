//! Tests of `telemetryConfigRef`: ToolHive's mapping of an MCPTelemetryConfig onto the proxy's
//! telemetry, sensitive headers as environment only, and every config that cannot be served.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use serde_json::{Value, json};

use super::fixtures::telemetry as telemetry_config;
use super::telemetry::{METRICS_PORT, header_env_name};
use super::*;
use crate::crd::mcpserver::MCPServer;

/// Resolves an MCPServer `fetch` whose `telemetryConfigRef` is `reference`, with the
/// MCPTelemetryConfig `otel` holding `spec` (missing when `None`).
fn resolved(reference: Value, spec: Option<Value>) -> Result<Resolved, PolicyError> {
    let fields = json!({"image": "img", "telemetryConfigRef": reference});
    let server = MCPServer::new("fetch", serde_json::from_value(fields).unwrap());
    let found = Referenced { telemetry: spec.map(telemetry_config), ..Default::default() };
    resolve(&server.policy_refs(), &found, "fetch")
}

fn otel(reference: Value, spec: Value) -> Result<Resolved, PolicyError> {
    resolved(reference, Some(spec))
}

fn full() -> Value {
    json!({
        "openTelemetry": {
            "enabled": true,
            "endpoint": "http://otel-collector.monitoring:4318",
            "insecure": true,
            "headers": {"x-team": "blue"},
            "tracing": {"enabled": true, "samplingRate": "0.25"},
            "metrics": {"enabled": false},
        },
        "prometheus": {"enabled": true},
    })
}

#[test]
fn an_enabled_config_maps_onto_the_proxys_telemetry_as_toolhive_does() {
    let r = otel(json!({"name": "otel"}), full()).unwrap();
    let t = r.telemetry.unwrap();
    assert_eq!(t.endpoint.as_deref(), Some("otel-collector.monitoring:4318"), "the scheme is dropped as in ToolHive");
    assert!(t.insecure && t.tracing_enabled && !t.metrics_enabled);
    assert_eq!(t.traces_url().as_deref(), Some("http://otel-collector.monitoring:4318/v1/traces"));
    assert_eq!(t.sampling_rate.get(), 0.25);
    assert_eq!(t.headers.get("x-team").map(String::as_str), Some("blue"));
    assert_eq!(t.service_name.as_deref(), Some("fetch"), "ToolHive's default: the workload's name");
    assert!(t.prometheus_metrics_path);
    assert_eq!(t.diagnostics_address.as_deref(), Some("0.0.0.0:9464"), "reachable from the Service");
    assert_eq!(r.metrics_port, Some(METRICS_PORT));
    assert!(r.hashes.telemetry.is_some() && r.env.is_empty() && r.ignored.is_empty());

    let r = otel(json!({"name": "otel", "serviceName": "mcp-fetch"}), full()).unwrap();
    assert_eq!(r.telemetry.unwrap().service_name.as_deref(), Some("mcp-fetch"));
}

#[test]
fn otlp_is_off_unless_enabled_and_metrics_only_with_prometheus() {
    let mut spec = full();
    spec["openTelemetry"]["enabled"] = json!(false);
    spec.as_object_mut().unwrap().remove("prometheus");
    let r = otel(json!({"name": "otel"}), spec).unwrap();
    let t = r.telemetry.unwrap();
    assert_eq!(t.endpoint, None);
    assert!(!t.tracing_enabled && !t.exports_traces());
    assert!(t.headers.is_empty());
    assert!(!t.prometheus_metrics_path, "no /metrics without prometheus.enabled");
    assert_eq!((t.diagnostics_address, r.metrics_port), (None, None));

    // Tracing unset: no spans, and the CRD's default rate.
    let r = otel(json!({"name": "otel"}), json!({"openTelemetry": {"enabled": true, "endpoint": "c:4318"}})).unwrap();
    let t = r.telemetry.unwrap();
    assert!(!t.tracing_enabled);
    assert_eq!(t.sampling_rate.get(), 0.05);
}

#[test]
fn sensitive_headers_are_variables_read_from_their_secrets() {
    let mut spec = full();
    spec["openTelemetry"]["sensitiveHeaders"] = json!([{"name": "Authorization", "secretKeyRef": {"name": "otel-auth", "key": "api-key"}},
               {"name": "x-api-key", "secretKeyRef": {"name": "otel-auth", "key": "other"}}]);
    let r = otel(json!({"name": "otel"}), spec).unwrap();
    let t = r.telemetry.unwrap();
    assert_eq!(t.headers_env.get("Authorization").map(String::as_str), Some("TOOLHIVE_OTEL_HEADER_AUTHORIZATION"));
    assert_eq!(t.headers_env.get("x-api-key").map(String::as_str), Some("TOOLHIVE_OTEL_HEADER_X_API_KEY"));
    assert_eq!(r.env.len(), 2);
    let var = r.env.iter().find(|e| e.name == "TOOLHIVE_OTEL_HEADER_X_API_KEY").unwrap();
    assert_eq!(var.value, None);
    let key = var.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
    assert_eq!((key.name.as_str(), key.key.as_str()), ("otel-auth", "other"));
    assert_eq!(header_env_name("x.b-c"), "TOOLHIVE_OTEL_HEADER_X_B_C");

    let mut spec = full();
    spec["openTelemetry"]["sensitiveHeaders"] = json!([{"name": "a", "secretKeyRef": {"name": "s", "key": ""}}]);
    let e = otel(json!({"name": "otel"}), spec).unwrap_err().to_string();
    assert!(e.contains("needs both a Secret name and a key"), "{e}");
    let mut spec = full();
    spec["openTelemetry"]["sensitiveHeaders"] = json!([{"name": "x-a", "secretKeyRef": {"name": "s", "key": "k"}},
                                                       {"name": "X_A", "secretKeyRef": {"name": "s", "key": "k"}}]);
    let e = otel(json!({"name": "otel"}), spec).unwrap_err().to_string();
    assert!(e.contains("named twice"), "{e}");
}

#[test]
fn configs_the_proxy_cannot_serve_are_named() {
    let e = resolved(json!({"name": "otel"}), None).unwrap_err();
    assert_eq!(e.to_string(), "spec.telemetryConfigRef: MCPTelemetryConfig otel not found");

    let cases: [(&str, Value, &str); 5] = [
        ("metrics", json!({"enabled": true}), "exporting metrics over OTLP is not supported"),
        ("tracing", json!({"enabled": true, "samplingRate": "1.5"}), "tracing.samplingRate: 1.5 is not a sampling"),
        ("tracing", json!({"enabled": true, "samplingRate": "often"}), "tracing.samplingRate: \"often\" is not"),
        ("endpoint", json!(""), "openTelemetry.enabled without openTelemetry.endpoint"),
        ("headers", json!({"bad header": "v"}), "telemetry.headers.bad header: is not an HTTP header name"),
    ];
    for (field, value, expected) in cases {
        let mut spec = full();
        spec["openTelemetry"][field] = value;
        let e = otel(json!({"name": "otel"}), spec).unwrap_err().to_string();
        assert!(e.starts_with("spec.telemetryConfigRef: MCPTelemetryConfig otel: "), "{field}: {e}");
        assert!(e.contains(expected), "{field}: {e}");
    }
    // An http endpoint without `insecure` is sent over https (ToolHive drops the scheme).
    let mut spec = full();
    spec["openTelemetry"]["insecure"] = json!(false);
    let t = otel(json!({"name": "otel"}), spec).unwrap().telemetry.unwrap();
    assert_eq!(t.traces_url().as_deref(), Some("https://otel-collector.monitoring:4318/v1/traces"));
}

#[test]
fn parts_apiary_does_not_apply_are_named_and_the_hash_follows_the_config() {
    let mut spec = full();
    spec["openTelemetry"]["resourceAttributes"] = json!({"team": "blue"});
    spec["openTelemetry"]["caBundleRef"] = json!({"configMapRef": {"name": "ca", "key": "ca.crt"}});
    let r = otel(json!({"name": "otel"}), spec).unwrap();
    assert_eq!(
        r.ignored,
        [
            "spec.telemetryConfigRef (openTelemetry.resourceAttributes)",
            "spec.telemetryConfigRef (openTelemetry.caBundleRef)"
        ]
    );
    let before = otel(json!({"name": "otel"}), full()).unwrap().hashes.telemetry;
    assert_ne!(r.hashes.telemetry, before);
}
