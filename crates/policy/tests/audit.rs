#![allow(clippy::unwrap_used)]
//! Audit: ToolHive's config document, the NDJSON events, the file sink and its bounded queue.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use apiary_policy::Identity;
use apiary_policy::audit::{AuditConfig, AuditConfigError, AuditEvent, Auditor, Outcome, event_type};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

fn lines(path: &std::path::Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'), "every event ends its line");
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn file_config(dir: &tempfile::TempDir) -> AuditConfig {
    AuditConfig { log_file: Some(dir.path().join("audit.log")), ..AuditConfig::default() }
}

fn alice() -> Identity {
    let claims = json!({"sub": "u-123", "preferred_username": "alice", "client_name": "claims-client"});
    Identity {
        subject: "u-123".into(),
        claims: claims.as_object().unwrap().clone(),
        kind: apiary_policy::identity::IdentityKind::Jwt,
    }
}

#[tokio::test]
async fn mixed_events_become_exactly_that_many_ndjson_lines() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig { component: "weather".into(), ..file_config(&dir) };
    let auditor = Auditor::start(cfg).await.unwrap();
    let methods = [Some("tools/call"), Some("tools/list"), Some("resources/read"), Some("initialize"), None];
    let outcomes = [Outcome::Success, Outcome::Denied, Outcome::Failure, Outcome::Error];
    let n = 57;
    for i in 0..n {
        let method = methods[i % methods.len()];
        let id = alice();
        let ev = auditor
            .event(method)
            .identity((i % 2 == 0).then_some(&id))
            .target_name(&format!("target-{i}"))
            .endpoint("/mcp")
            .http_method("POST")
            .outcome(outcomes[i % outcomes.len()])
            .duration(Duration::from_millis(i as u64))
            .peer(IpAddr::V4(Ipv4Addr::new(10, 0, 0, (i % 250) as u8)))
            .user_agent("test-agent/1.0")
            .request_id(&format!("req-{i}"))
            .transport("streamable-http")
            .response_size(100 + i as u64)
            .build();
        auditor.record(ev);
    }
    auditor.flush().await;
    assert_eq!(auditor.dropped(), 0);

    let events = lines(&dir.path().join("audit.log"));
    assert_eq!(events.len(), n);
    let mut ids = std::collections::BTreeSet::new();
    for (i, e) in events.iter().enumerate() {
        let id = e["audit_id"].as_str().unwrap();
        assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
        ids.insert(id.to_owned());
        let method = methods[i % methods.len()];
        assert_eq!(e["type"], event_type(method));
        assert_eq!(e["msg"], "audit_event");
        assert_eq!(e["component"], "weather");
        assert_eq!(e["outcome"], ["success", "denied", "failure", "error"][i % 4]);
        let at = e["logged_at"].as_str().unwrap();
        assert!(at.len() == 27 && at.ends_with('Z') && &at[10..11] == "T", "{at}");
        assert_eq!(
            e["source"],
            json!({"type": "network", "value": format!("10.0.0.{}", i % 250),
            "extra": {"user_agent": "test-agent/1.0", "request_id": format!("req-{i}")}})
        );
        if i % 2 == 0 {
            assert_eq!(e["subjects"], json!({"user_id": "u-123", "user": "alice", "client_name": "claims-client"}));
        } else {
            assert_eq!(e["subjects"], json!({"user": "anonymous"}));
        }
        let kind = match method {
            Some("tools/call") => "tool",
            Some("resources/read") => "resource",
            _ => "endpoint",
        };
        assert_eq!(
            e["target"],
            json!({"endpoint": "/mcp", "method": method.unwrap_or("POST"), "type": kind, "name": format!("target-{i}")})
        );
        assert_eq!(
            e["metadata"]["extra"],
            json!({"duration_ms": i, "transport": "streamable-http", "response_size_bytes": 100 + i})
        );
        assert!(e.get("data").is_none(), "no data unless asked");
    }
    assert_eq!(ids.len(), n, "audit ids are unique");
}

#[tokio::test]
async fn log_file_is_created_0600_and_appended() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let auditor = Auditor::start(file_config(&dir)).await.unwrap();
    auditor.record(auditor.event(Some("ping")).build());
    auditor.flush().await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(auditor);

    // A second start appends rather than truncating.
    let auditor = Auditor::start(file_config(&dir)).await.unwrap();
    auditor.record(auditor.event(Some("ping")).build());
    auditor.flush().await;
    assert_eq!(lines(&path).len(), 2);
}

#[tokio::test]
async fn existing_log_file_others_can_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    std::fs::write(&path, "").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    match Auditor::start(file_config(&dir)).await {
        Err(AuditConfigError::Permissions { mode, .. }) => assert_eq!(mode, 0o644),
        other => panic!("expected a permissions error, got {other:?}"),
    }
    // Group read (a log shipper's group) is fine.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(Auditor::start(file_config(&dir)).await.is_ok());
    // An unopenable path is an open error naming the file.
    let cfg = AuditConfig { log_file: Some(dir.path().join("missing-dir/audit.log")), ..AuditConfig::default() };
    let err = Auditor::start(cfg).await.unwrap_err();
    assert!(matches!(err, AuditConfigError::Open { .. }));
    assert!(err.to_string().contains("missing-dir/audit.log"), "{err}");
}

#[tokio::test]
async fn exclude_wins_over_include() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AuditConfig {
        event_types: vec!["mcp_tool_call".into(), "mcp_tools_list".into()],
        exclude_event_types: vec!["mcp_tools_list".into()],
        ..file_config(&dir)
    };
    let auditor = Auditor::start(cfg).await.unwrap();
    assert!(auditor.wants("mcp_tool_call"));
    assert!(!auditor.wants("mcp_tools_list"), "excluded although included");
    assert!(!auditor.wants("mcp_ping"), "not included");
    for m in ["tools/call", "tools/list", "ping", "tools/call"] {
        auditor.record(auditor.event(Some(m)).build());
    }
    auditor.flush().await;
    let events = lines(&dir.path().join("audit.log"));
    assert_eq!(events.iter().map(|e| e["type"].as_str().unwrap()).collect::<Vec<_>>(), ["mcp_tool_call"; 2]);

    // Only an exclude list: everything else is wanted.
    let only_exclude = AuditConfig { exclude_event_types: vec!["mcp_ping".into()], ..AuditConfig::default() };
    assert!(only_exclude.wants("mcp_initialize") && !only_exclude.wants("mcp_ping"));
}

#[tokio::test]
async fn request_and_response_data_are_opt_in_and_capped() {
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"authorization":"Bearer s3cret"}}}"#;
    let big_response = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"text":"{}"}}}}"#, "y".repeat(300));

    let off = AuditConfig::default();
    let ev = AuditEvent::builder(&off, Some("tools/call")).request_data(body).response_data(b"{}").build();
    let text = serde_json::to_string(&ev).unwrap();
    assert!(ev.data.is_none() && !text.contains("s3cret") && !text.to_lowercase().contains("authorization"));

    let on = AuditConfig { include_request_data: true, include_response_data: true, max_data_size: 256, ..off };
    let ev =
        AuditEvent::builder(&on, Some("tools/call")).request_data(body).response_data(big_response.as_bytes()).build();
    let v: Value = serde_json::to_value(&ev).unwrap();
    // The client's own body is kept as ToolHive keeps it: it fits, so it is there whole.
    assert_eq!(v["data"]["request"], serde_json::from_slice::<Value>(body).unwrap());
    assert_eq!(v["data"]["response"], json!({"truncated": true, "size_bytes": big_response.len()}));

    // Over the cap, even a body with a secret is only a marker.
    let tiny = AuditConfig { max_data_size: 16, ..on.clone() };
    let ev = AuditEvent::builder(&tiny, Some("tools/call")).request_data(body).build();
    let text = serde_json::to_string(&ev).unwrap();
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.contains(&format!(r#""request":{{"truncated":true,"size_bytes":{}}}"#, body.len())), "{text}");

    // Pretty-printed bodies stay on one line; numbers keep their spelling; non-JSON is a string.
    let ev = AuditEvent::builder(&on, None).request_data(b"{\n  \"n\": 1.50\n}").response_data(b"plain\ntext").build();
    let line = serde_json::to_string(&ev).unwrap();
    assert!(!line.contains('\n'));
    assert!(line.contains(r#""data":{"request":{"n":1.50},"response":"plain\ntext"}"#), "{line}");
}

#[tokio::test]
async fn full_queue_drops_and_counts_instead_of_blocking() {
    // A sink nobody reads: the writer blocks after 64 bytes and the queue of 4 fills up.
    let (writer, mut reader) = tokio::io::duplex(64);
    let cfg = AuditConfig { queue_capacity: 4, ..AuditConfig::default() };
    let auditor = Auditor::start_with_writer(cfg, writer);
    let n = 500u64;
    for i in 0..n {
        auditor.record(auditor.event(Some("tools/call")).target_name(&format!("t{i}")).build());
    }
    let dropped = auditor.dropped();
    assert!(dropped > 0, "a stalled sink must cost events, not block record()");
    assert!(dropped < n);

    let drain = tokio::spawn(async move {
        let mut all = Vec::new();
        reader.read_to_end(&mut all).await.unwrap();
        all
    });
    auditor.flush().await;
    assert_eq!(auditor.dropped(), dropped, "nothing more lost once the sink drains");
    drop(auditor); // the writer ends, closing the sink
    let all = drain.await.unwrap();
    let written: Vec<Value> =
        all.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert_eq!(written.len() as u64, n - dropped);
}

#[tokio::test]
async fn a_quiet_auditor_writes_without_being_flushed() {
    // One event and no flush: the writer must still write it (after its batching delay).
    let (writer, mut reader) = tokio::io::duplex(64 * 1024);
    let auditor = Auditor::start_with_writer(AuditConfig::default(), writer);
    auditor.record(auditor.event(Some("tools/list")).build());
    let mut got = Vec::new();
    let read = async {
        while !got.ends_with(b"\n") {
            let mut buf = [0u8; 4096];
            let n = reader.read(&mut buf).await.unwrap();
            assert!(n > 0, "the sink closed before the event was written");
            got.extend_from_slice(&buf[..n]);
        }
    };
    // A bound so a broken writer fails the test rather than hanging it (not a timing check).
    tokio::time::timeout(Duration::from_secs(30), read).await.unwrap();
    let event: Value = serde_json::from_slice(&got).unwrap();
    assert_eq!(event["type"], "mcp_tools_list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_recorded_from_many_threads_are_whole_lines() {
    let dir = tempfile::tempdir().unwrap();
    let auditor = Auditor::start(file_config(&dir)).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let auditor = auditor.clone();
            tokio::spawn(async move {
                for i in 0..200 {
                    auditor.record(auditor.event(Some("tools/call")).target_name(&format!("t{t}-{i}")).build());
                    if i % 50 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    auditor.flush().await;
    let events = lines(&dir.path().join("audit.log"));
    assert_eq!(events.len(), 1600);
    let mut names: Vec<String> = events.iter().map(|e| e["target"]["name"].as_str().unwrap().to_owned()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 1600);
    assert_eq!(auditor.dropped(), 0);
}

#[tokio::test]
async fn flush_waits_for_every_recorded_event() {
    let dir = tempfile::tempdir().unwrap();
    let auditor = Auditor::start(file_config(&dir)).await.unwrap();
    for round in 1..=3 {
        for _ in 0..20 {
            auditor.record(auditor.event(Some("tools/list")).build());
        }
        auditor.flush().await;
        assert_eq!(lines(&dir.path().join("audit.log")).len(), round * 20);
    }
}

#[test]
fn event_types_follow_toolhive() {
    for (method, ty) in [
        (Some("initialize"), "mcp_initialize"),
        (Some("tools/call"), "mcp_tool_call"),
        (Some("tools/list"), "mcp_tools_list"),
        (Some("resources/read"), "mcp_resource_read"),
        (Some("resources/list"), "mcp_resources_list"),
        (Some("prompts/get"), "mcp_prompt_get"),
        (Some("prompts/list"), "mcp_prompts_list"),
        (Some("notifications/message"), "mcp_notification"),
        (Some("notifications/initialized"), "mcp_notification"),
        (Some("notifications/roots/list_changed"), "mcp_roots_list_changed"),
        (Some("ping"), "mcp_ping"),
        (Some("logging/setLevel"), "mcp_logging"),
        (Some("completion/complete"), "mcp_completion"),
        (Some("vendor/thing"), "mcp_request"),
        (None, "http_request"),
    ] {
        assert_eq!(event_type(method), ty, "{method:?}");
    }
}

#[test]
fn toolhive_documents_are_read_unchanged() {
    // ToolHive's own file spelling (snake_case, as its Go struct tags have it).
    let toolhive = r#"{
  "component": "github-mcp",
  "event_types": ["mcp_tool_call", "mcp_initialize"],
  "exclude_event_types": ["mcp_ping"],
  "include_request_data": true,
  "include_response_data": false,
  "max_data_size": 2048,
  "log_file": "/var/log/audit.log"
}"#;
    let cfg = AuditConfig::from_text(toolhive, "audit.json").unwrap();
    assert_eq!(cfg.component, "github-mcp");
    assert_eq!(cfg.event_types, ["mcp_tool_call", "mcp_initialize"]);
    assert_eq!(cfg.exclude_event_types, ["mcp_ping"]);
    assert!(cfg.include_request_data && !cfg.include_response_data);
    assert_eq!(cfg.max_data_size, 2048);
    assert_eq!(cfg.log_file.as_deref(), Some(std::path::Path::new("/var/log/audit.log")));

    // camelCase (CRD and docs spelling), in YAML, gives the same configuration.
    let yaml = "component: github-mcp\neventTypes: [mcp_tool_call, mcp_initialize]\nexcludeEventTypes:\n  - mcp_ping\n\
                includeRequestData: true\nincludeResponseData: false\nmaxDataSize: 2048\nlogFile: /var/log/audit.log\n";
    assert_eq!(AuditConfig::from_text(yaml, "audit.yaml").unwrap(), cfg);
    let value = serde_json::from_str::<Value>(toolhive).unwrap();
    assert_eq!(AuditConfig::from_value(&value, "policy.audit").unwrap(), cfg);

    // Defaults, and an old document with `enabled`.
    let empty = AuditConfig::from_text("{}", "a.json").unwrap();
    assert_eq!(empty, AuditConfig::default());
    assert_eq!((empty.component.as_str(), empty.max_data_size, empty.log_file), ("toolhive-api", 1024, None));
    let disabled = AuditConfig::from_text(r#"{"enabled": false}"#, "a.json").unwrap();
    assert!(!disabled.wants("mcp_tool_call"));
}

#[test]
fn bad_documents_name_origin_line_and_reason() {
    let unknown_type =
        "{\n  \"component\": \"x\",\n  \"eventTypes\": [\n    \"mcp_tool_call\",\n    \"mcp_tool_cal\"\n  ]\n}";
    let err = AuditConfig::from_text(unknown_type, "/etc/audit.json").unwrap_err().to_string();
    assert!(err.contains("/etc/audit.json:5:") && err.contains("unknown event type `mcp_tool_cal`"), "{err}");

    let typo = "{\n  \"component\": \"x\",\n  \"includeRequestDta\": true\n}";
    let err = AuditConfig::from_text(typo, "a.json").unwrap_err().to_string();
    assert!(err.starts_with("audit config a.json:3:") && err.contains("includeRequestDta"), "{err}");

    let yaml = "component: x\nmaxDataSize: -5\n";
    let err = AuditConfig::from_text(yaml, "a.yaml").unwrap_err().to_string();
    assert!(err.contains("a.yaml:2:"), "{err}");

    let syntax = "{\"component\": \"x\",\n\"eventTypes\": [}";
    let err = AuditConfig::from_text(syntax, "a.json").unwrap_err().to_string();
    assert!(err.contains("a.json:2:"), "{err}");

    let huge = format!("{{\"maxDataSize\": {}}}", 1u64 << 40);
    assert!(AuditConfig::from_text(&huge, "a.json").unwrap_err().to_string().contains("maxDataSize"));

    let err = AuditConfig::from_value(&json!({"eventTypes": ["nope"]}), "policy.audit").unwrap_err().to_string();
    assert!(err.contains("policy.audit") && err.contains("nope"), "{err}");
}
