//! Parsing JSON and YAML: defaults, the path and position of every kind of parse error, versions.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use apiary_config::{ConfigError, Format, RunConfig, Source, StdioMode, Transport};
use common::{parse_err, yaml_with};

const FULL_YAML: &str = r#"schemaVersion: v1
name: everything
group: team-a
source:
  command:
    program: /usr/bin/python3
    args: ["server.py"]
args: ["--verbose"]
transport: streamable-http
targetHost: 127.0.0.1
targetPort: 9000
env:
  API_KEY: secret
proxy:
  host: 0.0.0.0
  port: 8080
  proxyMode: sse
  endpointPrefix: /team-a
  trustProxyHeaders: true
  allowedOrigins: ["https://app.example.com"]
stdio:
  mode: per-session
  maxSessionChildren: 4
limits:
  maxBodyBytes: 1024
  maxLineBytes: 2048
  maxSessions: 10
  sessionIdleTtlSecs: 60
  maxQueuedPerSession: 8
  eventBufferBytes: 4096
  requestTimeoutSecs: 5
  writeTimeoutSecs: 2
restart:
  maxRestarts: 3
  windowSecs: 60
  backoffInitialMs: 100
  backoffMaxMs: 1000
"#;

#[test]
fn full_yaml_reads_every_field() {
    let c = RunConfig::from_yaml_str(FULL_YAML).unwrap();
    assert_eq!(c.group, "team-a");
    assert_eq!(c.source, Source::command("/usr/bin/python3", ["server.py"]));
    assert_eq!(c.transport, Some(Transport::StreamableHttp));
    assert_eq!((c.target_port, c.proxy.port), (9000, 8080));
    assert_eq!(c.env["API_KEY"], "secret");
    assert_eq!(c.proxy.proxy_mode, apiary_config::ProxyMode::Sse);
    assert_eq!(c.proxy.endpoint_prefix, "/team-a");
    assert!(c.proxy.trust_proxy_headers);
    assert_eq!(c.stdio.mode, StdioMode::PerSession);
    assert_eq!(c.stdio.max_session_children, 4);
    assert_eq!(c.limits.max_body_bytes, 1024);
    assert_eq!(c.limits.write_timeout(), std::time::Duration::from_secs(2));
    assert_eq!(c.restart.backoff_max(), std::time::Duration::from_millis(1000));
    // The same document as JSON reads to the same value.
    let json = c.to_json_pretty().unwrap();
    assert_eq!(RunConfig::from_json_str(&json).unwrap(), c);
}

#[test]
fn minimal_document_gets_documented_defaults() {
    let c = RunConfig::from_yaml_str(&yaml_with("")).unwrap();
    assert_eq!(c.group, "default");
    assert_eq!(c.target_host, "127.0.0.1");
    assert_eq!(c.proxy.host, "127.0.0.1");
    assert_eq!(c.proxy.port, 0);
    assert_eq!(c.stdio.mode, StdioMode::Auto);
    assert_eq!(c.stdio.max_session_children, 32);
    assert_eq!(c.limits.max_body_bytes, 8_388_608);
    assert_eq!(c.limits.max_line_bytes, 16_777_216);
    assert_eq!(c.limits.max_sessions, 1000);
    assert_eq!(c.limits.session_idle_ttl_secs, 7200);
    assert_eq!(c.limits.max_queued_per_session, 256);
    assert_eq!(c.limits.event_buffer_bytes, 1_048_576);
    assert_eq!(c.limits.request_timeout_secs, 300);
    assert_eq!(c.limits.write_timeout_secs, 30);
    assert_eq!(c.restart.max_restarts, 10);
    assert_eq!(c.restart.window_secs, 300);
    assert_eq!(c.restart.backoff_initial_ms, 200);
    assert_eq!(c.restart.backoff_max_ms, 30_000);
    assert_eq!(c.transport, None);
    assert_eq!(c, common::base());
}

#[test]
fn port_out_of_range_is_named_with_its_path_in_both_formats() {
    let y = RunConfig::from_yaml_str(&yaml_with("proxy:\n  port: 70000\n"));
    let err = y.unwrap_err();
    assert_eq!(err.to_string(), "proxy.port: 70000 is not a port (0–65535) (line 8, column 9)");
    assert_eq!(err.field_path(), Some("proxy.port"));

    let j =
        RunConfig::from_json_str(r#"{"schemaVersion":"v1","name":"x","source":{"image":{"ref":"a"}},"targetPort":-1}"#);
    let (path, message, _) = parse_err(j);
    assert_eq!(path, "targetPort");
    assert_eq!(message, "-1 is not a port (0–65535)");
}

#[test]
fn negative_and_huge_counts_are_named() {
    let (path, message, _) = parse_err(RunConfig::from_yaml_str(&yaml_with("limits:\n  maxSessions: -5\n")));
    assert_eq!(path, "limits.maxSessions");
    assert_eq!(message, "-5 is not a whole number from 0 to 4294967295");
    let (path, _, _) = parse_err(RunConfig::from_json_str(
        r#"{"schemaVersion":"v1","name":"x","source":{"image":{"ref":"a"}},"restart":{"windowSecs":1.5}}"#,
    ));
    assert_eq!(path, "restart.windowSecs");
}

#[test]
fn unknown_fields_name_their_path() {
    let cases = [
        ("bogus: 1\n", "bogus", "unknown field `bogus`"),
        ("proxy:\n  prot: 7\n", "proxy.prot", "unknown field `prot`"),
        ("limits:\n  maxBody: 7\n", "limits.maxBody", "unknown field `maxBody`"),
        ("stdio:\n  stdioMode: auto\n", "stdio.stdioMode", "unknown field `stdioMode`"),
        ("restart:\n  max_restarts: 1\n", "restart.max_restarts", "unknown field `max_restarts`"),
    ];
    for (extra, want_path, want_msg) in cases {
        let (path, message, shown) = parse_err(RunConfig::from_yaml_str(&yaml_with(extra)));
        assert_eq!(path, want_path, "{extra}");
        assert!(message.contains(want_msg), "{message}");
        assert!(shown.starts_with(&format!("{want_path}: unknown field")), "{shown}");
    }
    let (path, message, _) = parse_err(RunConfig::from_json_str(
        r#"{"schemaVersion":"v1","name":"x","source":{"package":{"ecosystem":"npx","nam":"p"}}}"#,
    ));
    assert_eq!(path, "source.package.nam");
    assert!(message.contains("unknown field `nam`"), "{message}");
    let (path, _, _) =
        parse_err(RunConfig::from_json_str(r#"{"schemaVersion":"v1","name":"x","source":{"docker":{"ref":"a"}}}"#));
    assert_eq!(path, "source.docker");
}

#[test]
fn wrong_types_and_variants_name_their_path() {
    let (path, message, _) = parse_err(RunConfig::from_yaml_str(&yaml_with("transport: grpc\n")));
    assert_eq!(path, "transport");
    assert!(message.contains("unknown variant `grpc`"), "{message}");
    assert!(message.contains("streamable-http"), "{message}");

    let (path, _, _) = parse_err(RunConfig::from_yaml_str(&yaml_with("args: [a, [b]]\n")));
    assert_eq!(path, "args[1]");

    let (path, message, _) = parse_err(RunConfig::from_json_str(
        r#"{"schemaVersion":"v1","name":"x","source":{"image":{"ref":"a"}},"proxy":{"trustProxyHeaders":"maybe"}}"#,
    ));
    assert_eq!(path, "proxy.trustProxyHeaders");
    assert!(message.contains("invalid type"), "{message}");

    let (path, message, _) = parse_err(RunConfig::from_json_str(
        r#"{"schemaVersion":"v1","name":"x","source":{"package":{"ecosystem":"cargo","name":"p"}}}"#,
    ));
    assert_eq!(path, "source.package.ecosystem");
    assert!(message.contains("expected `npx` or `uvx`"), "{message}");
}

#[test]
fn source_needs_exactly_one_member() {
    let two = yaml_with("").replace("source:\n", "source:\n  remote:\n    url: https://h/mcp\n");
    let (path, message, _) = parse_err(RunConfig::from_yaml_str(&two));
    assert_eq!(path, "source");
    assert_eq!(message, "give exactly one of package, command, image or remote; package and remote were given");
    let (path, message, _) = parse_err(RunConfig::from_json_str(r#"{"schemaVersion":"v1","name":"x","source":{}}"#));
    assert_eq!(path, "source");
    assert!(message.ends_with("none was given"), "{message}");
}

#[test]
fn missing_required_fields_are_named() {
    let (path, message, _) = parse_err(RunConfig::from_json_str(r#"{"schemaVersion":"v1","name":"x"}"#));
    assert_eq!(path, ".");
    assert!(message.contains("missing field `source`"), "{message}");
    let (path, message, _) = parse_err(RunConfig::from_yaml_str("name: x\n"));
    assert_eq!(path, "schemaVersion");
    assert!(message.contains("schemaVersion: v1"), "{message}");
}

#[test]
fn unsupported_version_is_refused_before_unknown_fields() {
    let err = RunConfig::from_yaml_str("schemaVersion: v2\nname: x\nfutureField: 1\n").unwrap_err();
    assert!(matches!(&err, ConfigError::UnsupportedVersion { found, .. } if found == "v2"), "{err:?}");
    assert_eq!(err.to_string(), "schemaVersion: \"v2\" is not supported; supported versions: v1");
    let err = RunConfig::from_json_str(r#"{"schemaVersion":"v1beta1"}"#).unwrap_err();
    assert!(matches!(err, ConfigError::UnsupportedVersion { .. }), "{err:?}");
    let (path, _, _) =
        parse_err(RunConfig::from_json_str(r#"{"schemaVersion":1,"name":"x","source":{"image":{"ref":"a"}}}"#));
    assert_eq!(path, "schemaVersion");
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let err = RunConfig::from_json_str("{\n  \"schemaVersion\": \"v1\",\n  \"name\": \"x\",\n}").unwrap_err();
    match &err {
        ConfigError::Parse { format: Format::Json, line: Some(4), column: Some(1), .. } => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().starts_with("invalid JSON: trailing comma"), "{err}");

    let err = RunConfig::from_yaml_str("schemaVersion: v1\nname: x\nname: y\n").unwrap_err();
    match &err {
        ConfigError::Parse { format: Format::Yaml, line: Some(3), message, .. } => {
            assert!(message.contains("duplicate"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn from_str_validates_but_parse_str_does_not() {
    let text = yaml_with("proxy:\n  endpointPrefix: api\n").replace("name: everything", "name: Bad");
    let err = RunConfig::from_yaml_str(&text).unwrap_err();
    let ConfigError::Validation(v) = &err else { panic!("expected validation error, got {err:?}") };
    assert_eq!(v.len(), 2);
    assert_eq!(err.field_path(), Some("name"));
    let parsed = RunConfig::parse_str(&text, Format::Yaml).unwrap();
    assert_eq!(parsed.name, "Bad");
}

#[test]
fn yaml_scalars_that_look_like_other_types_stay_strings() {
    let c = RunConfig::from_yaml_str(&yaml_with("args: [\"yes\", \"null\", \"1.0\", \"~\"]\nenv:\n  A: \"true\"\n"))
        .unwrap();
    assert_eq!(c.args, ["yes", "null", "1.0", "~"]);
    assert_eq!(c.env["A"], "true");
    let again = RunConfig::from_yaml_str(&c.to_yaml().unwrap()).unwrap();
    assert_eq!(again, c);
}
