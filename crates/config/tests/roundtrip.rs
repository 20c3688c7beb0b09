//! Generated configurations survive struct -> JSON -> struct, struct -> YAML -> struct and JSON <-> YAML.
#![allow(clippy::unwrap_used)] // tests may unwrap

use apiary_config::{Limits, ProxyMode, RestartPolicy, RunConfig, Source, StdioMode, Transport, bounds};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9._-]{0,20}[a-z0-9])?"
}

/// Free text: arbitrary Unicode (including YAML-significant characters, quotes, newlines, and words
/// like `null` or `yes`) except NUL, which no process argument can carry.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>().prop_map(|s| s.replace('\0', "")),
        prop::sample::select(vec![
            "",
            "yes",
            "no",
            "null",
            "~",
            "true",
            "1.0",
            "0x10",
            "- a",
            "a: b",
            "#c",
            "'",
            "\"",
            "&a",
            "*a",
            "!tag",
            "%x",
            "@x",
            "`x",
            "|",
            ">",
            "  lead",
            "trail  ",
            "\n",
            "a\nb",
            "\t",
            "\u{85}",
            "\u{feff}x",
            "\u{2028}",
        ])
        .prop_map(str::to_owned),
    ]
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        "(@[a-z]{1,8}/)?[a-z][a-z0-9-]{0,15}(@[0-9]\\.[0-9]\\.[0-9])?".prop_map(Source::npx),
        "[a-z]([a-z0-9-]{0,14}[a-z0-9])?(@[0-9]\\.[0-9]|==[0-9]\\.[0-9]|\\[x\\]>=1)?".prop_map(Source::uvx),
        ("/[a-z/]{1,20}", prop::collection::vec(text(), 0..4)).prop_map(|(p, a)| Source::command(p, a)),
        "[a-z]{1,8}(\\.[a-z]{2,3})?/[a-z]{1,8}(:[a-z0-9.]{1,6})?".prop_map(Source::image),
        "https?://[a-z]{1,10}(:[0-9]{2,4})?(/[a-z]{1,5}){0,3}(/sse|/mcp)?".prop_map(Source::remote),
    ]
}

fn in_bound(b: apiary_config::Bound) -> impl Strategy<Value = u64> {
    prop_oneof![Just(b.min), Just(b.max), b.min..=b.max]
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        (
            in_bound(bounds::MAX_BODY_BYTES),
            in_bound(bounds::MAX_LINE_BYTES),
            in_bound(bounds::MAX_SESSIONS),
            in_bound(bounds::SESSION_IDLE_TTL_SECS),
        ),
        (
            in_bound(bounds::MAX_QUEUED_PER_SESSION),
            in_bound(bounds::EVENT_BUFFER_BYTES),
            in_bound(bounds::REQUEST_TIMEOUT_SECS),
            in_bound(bounds::WRITE_TIMEOUT_SECS),
        ),
    )
        .prop_map(|((a, b, c, d), (e, f, g, h))| Limits {
            max_body_bytes: a,
            max_line_bytes: b,
            max_sessions: u32::try_from(c).unwrap(),
            session_idle_ttl_secs: d,
            max_queued_per_session: u32::try_from(e).unwrap(),
            event_buffer_bytes: f,
            request_timeout_secs: g,
            write_timeout_secs: h,
        })
}

fn restart() -> impl Strategy<Value = RestartPolicy> {
    (
        in_bound(bounds::MAX_RESTARTS),
        in_bound(bounds::WINDOW_SECS),
        in_bound(bounds::BACKOFF_INITIAL_MS),
        in_bound(bounds::BACKOFF_MAX_MS),
    )
        .prop_map(|(a, b, c, d)| RestartPolicy {
            max_restarts: u32::try_from(a).unwrap(),
            window_secs: b,
            backoff_initial_ms: c.min(d),
            backoff_max_ms: c.max(d),
        })
}

prop_compose! {
    fn config()(
        name in name(),
        group in name(),
        source in source(),
        args in prop::collection::vec(text(), 0..4),
        transport in prop::option::of(prop::sample::select(vec![Transport::Sse, Transport::StreamableHttp, Transport::Stdio])),
        target_port in 0u16..=65535,
        env in prop::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,10}", text(), 0..4),
        host in prop::sample::select(vec!["127.0.0.1", "0.0.0.0", "::1", "localhost", "proxy.example.com"]),
        port in 0u16..=65535,
        proxy_mode in prop::sample::select(vec![ProxyMode::Sse, ProxyMode::StreamableHttp]),
        prefix in "(/[a-z0-9][a-z0-9._~-]{0,5}){0,3}",
        trust in any::<bool>(),
        origins in prop::collection::vec("https?://[a-z]{1,8}\\.example(:[1-9][0-9]{1,3})?", 0..3),
        stdio_mode in prop::sample::select(vec![StdioMode::Auto, StdioMode::Shared, StdioMode::PerSession]),
        children in 1u32..=apiary_config::MAX_SESSION_CHILDREN,
        limits in limits(),
        restart in restart(),
    ) -> RunConfig {
        let mut c = RunConfig::new(name, source);
        c.group = group;
        c.args = args;
        // Remote sources cannot use stdio; everything else may use any transport.
        c.transport = transport.filter(|t| !(c.is_remote() && *t == Transport::Stdio));
        c.target_port = target_port;
        c.env = env;
        c.proxy.host = host.to_owned();
        // Avoid the one cross-field conflict (same port for proxy and local HTTP server).
        c.proxy.port = if port == target_port && port != 0 { port ^ 1 } else { port };
        c.proxy.proxy_mode = proxy_mode;
        c.proxy.endpoint_prefix = prefix;
        c.proxy.trust_proxy_headers = trust;
        c.proxy.allowed_origins = origins;
        c.stdio.mode = stdio_mode;
        c.stdio.max_session_children = children;
        c.limits = limits;
        c.restart = restart;
        c
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn generated_configs_are_valid_and_round_trip(c in config()) {
        prop_assert!(c.validate().is_ok(), "generator made an invalid config: {:?}", c.validate());

        let json = c.to_json_pretty().unwrap();
        let from_json = RunConfig::from_json_str(&json);
        prop_assert!(from_json.is_ok(), "JSON failed: {:?}\n{}", from_json.err(), json);
        prop_assert_eq!(from_json.unwrap(), c.clone());

        let yaml = c.to_yaml().unwrap();
        let from_yaml = RunConfig::from_yaml_str(&yaml);
        prop_assert!(from_yaml.is_ok(), "YAML failed: {:?}\n{}", from_yaml.err(), yaml);
        let from_yaml = from_yaml.unwrap();
        prop_assert_eq!(&from_yaml, &c);

        // JSON -> struct -> YAML gives the same text as struct -> YAML, and back.
        prop_assert_eq!(RunConfig::from_json_str(&json).unwrap().to_yaml().unwrap(), yaml.clone());
        prop_assert_eq!(from_yaml.to_json_pretty().unwrap(), json);
    }
}

/// A custom permission profile, the sandbox switch and the degraded flag survive JSON and YAML, and
/// the defaults are left out of what is written.
#[test]
fn permission_profile_and_isolation_round_trip() {
    let profile = apiary_config::PermissionProfile::from_json_str(
        r#"{"name": "p", "read": ["/srv/data"], "write": ["/srv/out:/out"],
            "network": {"outbound": {"allow_host": [".example.com"], "allow_port": [443]}}}"#,
        std::path::Path::new("p.json"),
    )
    .unwrap();
    let config = RunConfig::builder("w", Source::npx("pkg"))
        .permission_profile(profile)
        .isolation(apiary_config::Isolation::None)
        .allow_degraded_isolation(true)
        .build()
        .unwrap();
    let json = config.to_json_pretty().unwrap();
    assert!(json.contains("\"allow_host\""), "{json}");
    assert_eq!(RunConfig::from_json_str(&json).unwrap(), config);
    assert_eq!(RunConfig::from_yaml_str(&config.to_yaml().unwrap()).unwrap(), config);

    let plain = RunConfig::builder("w", Source::npx("pkg")).build().unwrap();
    let json = plain.to_json_pretty().unwrap();
    assert!(!json.contains("permissionProfile") && !json.contains("isolation"), "{json}");
}
