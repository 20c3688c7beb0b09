//! One test per validation rule: each checks the field path and the wording of the message.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use apiary_config::{Limits, PermissionProfile, RestartPolicy, RunConfig, Source, Transport, bounds};
use common::{assert_only_error, assert_valid, base, errors_of};

#[test]
fn base_and_defaults_are_valid() {
    assert_valid(&base());
    assert_valid(&RunConfig::new("r", Source::remote("https://example.com/mcp")));
    assert_valid(&RunConfig::new("i", Source::image("ghcr.io/org/server:1.0")));
    assert_valid(&RunConfig::new("c", Source::command("/usr/bin/python3", ["server.py"])));
    assert_valid(&RunConfig::new("u", Source::uvx("mcp-server-time")));
}

#[test]
fn name_rules() {
    for ok in ["a", "0", "a.b_c-d", "fetch-k8s", &"a".repeat(63)] {
        let mut c = base();
        c.name = ok.to_owned();
        assert_valid(&c);
    }
    let mut c = base();
    c.name = String::new();
    assert_only_error(&c, "name", "must not be empty");
    for bad in ["Everything", "-a", "a-", ".a", "a_", "a b", "a/b", "ünï", &"a".repeat(64)] {
        let mut c = base();
        c.name = bad.to_owned();
        assert_only_error(&c, "name", "starting and ending with a letter or digit");
    }
}

#[test]
fn group_rules() {
    let mut c = base();
    c.group = "Team A".to_owned();
    assert_only_error(&c, "group", "is not a valid name");
    c.group = String::new();
    assert_only_error(&c, "group", "must not be empty");
}

#[test]
fn package_name_rules() {
    let mut c = base();
    c.source = Source::npx("");
    assert_only_error(&c, "source.package.name", "must not be empty");
    c.source = Source::npx("--registry=evil");
    assert_only_error(&c, "source.package.name", "would be read as an option");
    c.source = Source::npx("pkg name");
    assert_only_error(&c, "source.package.name", "spaces or control characters");
    for ok in ["@scope/pkg@1.2.3", "pkg@latest", "github:user/repo"] {
        c.source = Source::npx(ok);
        assert_valid(&c);
    }
}

#[test]
fn uvx_requirement_rules() {
    let mut c = base();
    for ok in [
        "mcp-server-time",
        "mcp-server-time@0.6.2",
        "mcp-server-time@latest",
        "mcp_server.time==0.6.2",
        "mcp-server-fetch[extra]>=1.0",
        "pkg~=1.2",
        "pkg!=1.0",
        "pkg<2",
    ] {
        c.source = Source::uvx(ok);
        assert_valid(&c);
    }
    for bad in ["==1.2", "pkg@", "pkg@1 2", "pkg$", "_pkg", "pkg-", "pkg@1/2", "pkg/x"] {
        c.source = Source::uvx(bad);
        let errs = errors_of(&c);
        assert_eq!(errs.len(), 1, "{bad}: {errs}");
        assert_eq!(errs.errors()[0].path, "source.package.name", "{bad}");
    }
    c.source = Source::uvx("pkg$");
    assert_only_error(&c, "source.package.name", "is not a Python package requirement");
}

#[test]
fn command_rules() {
    let mut c = base();
    c.source = Source::command("", Vec::<String>::new());
    assert_only_error(&c, "source.command.program", "must not be empty");
    c.source = Source::command("py\0thon", Vec::<String>::new());
    assert_only_error(&c, "source.command.program", "NUL");
    c.source = Source::command("python3", ["ok", "b\0ad"]);
    assert_only_error(&c, "source.command.args[1]", "NUL");
}

#[test]
fn image_rules() {
    let mut c = base();
    c.source = Source::image("");
    assert_only_error(&c, "source.image.ref", "must not be empty");
    c.source = Source::image("--privileged");
    assert_only_error(&c, "source.image.ref", "would be read as an option");
    c.source = Source::image("my image");
    assert_only_error(&c, "source.image.ref", "not an image reference");
    c.source = Source::image("docker.io/mcp/fetch@sha256:0123abcd");
    assert_valid(&c);
}

#[test]
fn remote_url_rules() {
    let mut c = base();
    c.source = Source::remote("not a url");
    assert_only_error(&c, "source.remote.url", "is not a URL");
    c.source = Source::remote("ftp://example.com/mcp");
    assert_only_error(&c, "source.remote.url", "use http or https");
    c.source = Source::remote("https://example.com/mcp#frag");
    assert_only_error(&c, "source.remote.url", "fragment");
    c.source = Source::remote("http://[::1]:8080/mcp");
    assert_valid(&c);
}

#[test]
fn args_rules() {
    let mut c = base();
    c.args = vec!["ok".into(), "x\0".into()];
    assert_only_error(&c, "args[1]", "NUL");
    c.args = vec!["y".repeat(apiary_config::MAX_ARG_BYTES + 1)];
    assert_only_error(&c, "args[0]", "at most 131072 bytes");
    c.args = vec!["y".repeat(apiary_config::MAX_ARG_BYTES)];
    assert_valid(&c);
}

#[test]
fn remote_cannot_use_stdio() {
    let mut c = RunConfig::new("r", Source::remote("https://example.com/mcp"));
    c.transport = Some(Transport::Stdio);
    assert_only_error(&c, "transport", "stdio is not possible for a remote server");
}

#[test]
fn target_port_cannot_equal_proxy_port_for_local_http_servers() {
    let mut c = base();
    c.transport = Some(Transport::StreamableHttp);
    c.target_port = 8080;
    c.proxy.port = 8080;
    assert_only_error(&c, "targetPort", "is also proxy.port");
    // stdio servers do not listen; image ports live inside the container.
    c.transport = Some(Transport::Stdio);
    assert_valid(&c);
    c.transport = Some(Transport::Sse);
    c.source = Source::image("ghcr.io/org/server:tag");
    assert_valid(&c);
}

#[test]
fn a_network_isolated_sandbox_may_hold_an_http_server() {
    // The proxy reaches its port through the workload's Unix socket (apiary_runtime::inbound).
    let mut c = base();
    c.transport = Some(Transport::StreamableHttp);
    c.permission_profile = PermissionProfile::none();
    assert_valid(&c);
}

#[test]
fn target_host_rules() {
    let mut c = base();
    c.target_host = "bad host".into();
    assert_only_error(&c, "targetHost", "not an IP address or host name");
}

#[test]
fn env_name_and_value_rules() {
    let mut c = base();
    c.env.insert("1BAD".into(), "v".into());
    assert_only_error(&c, "env.1BAD", "not a valid environment variable name");
    let mut c = base();
    c.env.insert("A-B".into(), "v".into());
    assert_only_error(&c, "env.A-B", "not a valid environment variable name");
    let mut c = base();
    c.env.insert(String::new(), "v".into());
    assert_only_error(&c, "env.", "not a valid environment variable name");
    let mut c = base();
    c.env.insert("GOOD".into(), "a\0b".into());
    assert_only_error(&c, "env.GOOD", "NUL");
    let mut c = base();
    c.env.insert("_ok".into(), String::new());
    c.env.insert("lower_Case9".into(), "x".into());
    assert_valid(&c);
}

#[test]
fn proxy_host_rules() {
    let mut c = base();
    for ok in ["127.0.0.1", "0.0.0.0", "::1", "::", "localhost", "my-host.example.com"] {
        c.proxy.host = ok.into();
        assert_valid(&c);
    }
    c.proxy.host = String::new();
    assert_only_error(&c, "proxy.host", "must not be empty");
    c.proxy.host = "[::1]".into();
    assert_only_error(&c, "proxy.host", "without brackets");
    c.proxy.host = "-bad.example".into();
    assert_only_error(&c, "proxy.host", "not an IP address or host name");
    c.proxy.host = "a..b".into();
    assert_only_error(&c, "proxy.host", "not an IP address or host name");
}

#[test]
fn endpoint_prefix_rules() {
    let mut c = base();
    for ok in ["", "/team-a", "/a/b", "/%7Euser"] {
        c.proxy.endpoint_prefix = ok.into();
        assert_valid(&c);
    }
    let cases = [
        ("api", "must start with '/'"),
        ("/", "no prefix"),
        ("/api/", "must not end with '/'"),
        ("/a//b", "empty, '.' or '..'"),
        ("/a/../b", "empty, '.' or '..'"),
        ("/a b", "not allowed in a URL path"),
        ("/a?b", "not allowed in a URL path"),
    ];
    for (bad, needle) in cases {
        c.proxy.endpoint_prefix = bad.into();
        assert_only_error(&c, "proxy.endpointPrefix", needle);
    }
}

#[test]
fn allowed_origin_rules() {
    let mut c = base();
    c.proxy.allowed_origins =
        vec!["https://app.example.com".into(), "http://localhost:3000".into(), "vscode-webview://abc123".into()];
    assert_valid(&c);
    let cases = [
        ("*", "wildcards are not supported"),
        ("null", "\"null\" origins"),
        ("app.example.com", "is not an origin"),
        ("https://app.example.com/", "is not an origin"),
        ("https://app.example.com/path", "is not an origin"),
        ("https://user@app.example.com", "is not an origin"),
        ("https://app.example.com?x=1", "is not an origin"),
    ];
    for (bad, needle) in cases {
        c.proxy.allowed_origins = vec!["https://ok.example".into(), bad.into()];
        assert_only_error(&c, "proxy.allowedOrigins[1]", needle);
    }
}

#[test]
fn stdio_max_session_children_bounds() {
    let mut c = base();
    c.stdio.max_session_children = 0;
    assert_only_error(&c, "stdio.maxSessionChildren", "greater than 0");
    c.stdio.max_session_children = apiary_config::MAX_SESSION_CHILDREN + 1;
    assert_only_error(&c, "stdio.maxSessionChildren", "out of range; use 1–16384 children");
    c.stdio.max_session_children = apiary_config::MAX_SESSION_CHILDREN;
    assert_valid(&c);
}

type Setter = fn(&mut RunConfig, u64);

fn limit_fields() -> Vec<(&'static str, apiary_config::Bound, Setter)> {
    vec![
        ("limits.maxBodyBytes", bounds::MAX_BODY_BYTES, |c, v| c.limits.max_body_bytes = v),
        ("limits.maxLineBytes", bounds::MAX_LINE_BYTES, |c, v| c.limits.max_line_bytes = v),
        ("limits.maxSessions", bounds::MAX_SESSIONS, |c, v| c.limits.max_sessions = u32::try_from(v).unwrap()),
        ("limits.sessionIdleTtlSecs", bounds::SESSION_IDLE_TTL_SECS, |c, v| c.limits.session_idle_ttl_secs = v),
        ("limits.maxQueuedPerSession", bounds::MAX_QUEUED_PER_SESSION, |c, v| {
            c.limits.max_queued_per_session = u32::try_from(v).unwrap()
        }),
        ("limits.eventBufferBytes", bounds::EVENT_BUFFER_BYTES, |c, v| c.limits.event_buffer_bytes = v),
        ("limits.requestTimeoutSecs", bounds::REQUEST_TIMEOUT_SECS, |c, v| c.limits.request_timeout_secs = v),
        ("limits.writeTimeoutSecs", bounds::WRITE_TIMEOUT_SECS, |c, v| c.limits.write_timeout_secs = v),
        ("restart.maxRestarts", bounds::MAX_RESTARTS, |c, v| c.restart.max_restarts = u32::try_from(v).unwrap()),
        ("restart.windowSecs", bounds::WINDOW_SECS, |c, v| c.restart.window_secs = v),
        ("restart.backoffInitialMs", bounds::BACKOFF_INITIAL_MS, |c, v| {
            // Keep the max ≥ initial so only the bound under test can fail.
            c.restart.backoff_initial_ms = v;
            c.restart.backoff_max_ms = bounds::BACKOFF_MAX_MS.max;
        }),
        ("restart.backoffMaxMs", bounds::BACKOFF_MAX_MS, |c, v| {
            c.restart.backoff_initial_ms = 1;
            c.restart.backoff_max_ms = v;
        }),
    ]
}

#[test]
fn every_limit_has_bounds_checked_at_its_path() {
    for (path, bound, set) in limit_fields() {
        let mut c = base();
        set(&mut c, bound.min);
        assert_valid(&c);
        set(&mut c, bound.max);
        assert_valid(&c);
        set(&mut c, bound.max + 1);
        assert_only_error(&c, path, &format!("use {}–{} {}", bound.min, bound.max, bound.unit));
        if bound.min > 0 {
            set(&mut c, 0);
            assert_only_error(&c, path, "0 is not allowed: every bound must be greater than 0");
        }
    }
}

#[test]
fn zero_restarts_means_never_restart_and_is_valid() {
    let mut c = base();
    c.restart.max_restarts = 0;
    assert_valid(&c);
}

#[test]
fn backoff_max_must_not_be_below_initial() {
    let mut c = base();
    c.restart = RestartPolicy { backoff_initial_ms: 5000, backoff_max_ms: 1000, ..RestartPolicy::default() };
    assert_only_error(&c, "restart.backoffMaxMs", "less than restart.backoffInitialMs (5000)");
}

#[test]
fn all_errors_are_collected_in_field_order() {
    let mut c = base();
    c.name = "Bad Name".into();
    c.source = Source::remote("ftp://x/mcp");
    c.transport = Some(Transport::Stdio);
    c.env.insert("1BAD".into(), "v".into());
    c.proxy.endpoint_prefix = "api".into();
    c.limits = Limits { max_sessions: 0, ..Limits::default() };
    let errs = errors_of(&c);
    let paths: Vec<&str> = errs.errors().iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["name", "source.remote.url", "transport", "env.1BAD", "proxy.endpointPrefix", "limits.maxSessions"]
    );
    // Display: one line per error, each "path: message".
    let shown = errs.to_string();
    assert_eq!(shown.lines().count(), 6, "{shown}");
    assert!(shown.lines().all(|l| paths.iter().any(|p| l.starts_with(&format!("{p}: ")))));
    assert!(errs.at("env.1BAD").is_some());
}

#[test]
fn builder_validates() {
    let err = RunConfig::builder("x", Source::npx("pkg")).proxy_port(8080).env("1BAD", "v").build().unwrap_err();
    assert_eq!(err.errors()[0].path, "env.1BAD");
    let ok = RunConfig::builder("x", Source::npx("pkg"))
        .group("team")
        .args(["--flag"])
        .transport(Transport::Sse)
        .target_port(9000)
        .proxy_host("0.0.0.0")
        .proxy_port(8080)
        .endpoint_prefix("/x")
        .allowed_origin("https://a.example")
        .trust_proxy_headers(true)
        .build()
        .unwrap();
    assert_eq!(ok.proxy.port, 8080);
    assert_eq!(ok.args, ["--flag"]);
}

#[test]
fn secret_rules() {
    use apiary_config::SecretRef;
    let secret = |name: &str, target: &str| SecretRef { name: name.to_owned(), target: target.to_owned() };
    let mut c = base();
    c.secrets = vec![secret("github-token", "GITHUB_TOKEN"), secret("b", "B")];
    assert_valid(&c);
    // Only the reference is written, never a value, and it reads back the same.
    let json = serde_json::to_string(&c).unwrap();
    assert!(json.contains(r#""secrets":[{"name":"github-token","target":"GITHUB_TOKEN"}"#), "{json}");
    assert_eq!(RunConfig::from_json_str(&json).unwrap(), c);

    c.secrets = vec![secret("-x", "A")];
    assert_only_error(&c, "secrets[0].name", "is not a secret name");
    c.secrets = vec![secret("x", "1A")];
    assert_only_error(&c, "secrets[0].target", "is not a valid environment variable name");
    c.secrets = vec![secret("x", "A"), secret("y", "A")];
    assert_only_error(&c, "secrets[1].target", "target of an earlier secret");
    c.secrets = vec![secret("x", "A")];
    c.env.insert("A".into(), "v".into());
    assert_only_error(&c, "secrets[0].target", "set by env as well");
    let mut r = RunConfig::new("r", Source::remote("https://example.com/mcp"));
    r.secrets = vec![secret("x", "A")];
    assert_only_error(&r, "secrets", "no process to give secrets to");
}
