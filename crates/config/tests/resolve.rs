//! Derived values: the effective transport and the command line for package and command sources.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use apiary_config::{CommandLine, RunConfig, Source, Transport, transport_for_remote_url};

fn line(c: &RunConfig) -> (String, Vec<String>) {
    let CommandLine { program, args } = c.command_line().expect("a local command");
    (program, args)
}

#[test]
fn transport_defaults_follow_the_source() {
    for src in [Source::npx("p"), Source::uvx("p"), Source::command("p", Vec::<String>::new()), Source::image("i")] {
        let c = RunConfig::new("x", src);
        assert_eq!(c.effective_transport(), Transport::Stdio);
        assert!(!c.is_remote());
    }
    let cases = [
        ("https://fetch-mcp.example.com/mcp", Transport::StreamableHttp),
        ("https://fetch-mcp.example.com/fetch/mcp", Transport::StreamableHttp),
        ("https://h/sse", Transport::Sse),
        ("https://h/sse/", Transport::Sse),
        ("https://h/api/sse?token=1", Transport::Sse),
        ("https://h/", Transport::StreamableHttp),
        ("https://h/ssex", Transport::StreamableHttp),
        ("https://h/x-sse", Transport::StreamableHttp),
    ];
    for (url, want) in cases {
        assert_eq!(transport_for_remote_url(url), want, "{url}");
        let c = RunConfig::new("x", Source::remote(url));
        assert!(c.is_remote());
        assert_eq!(c.remote_url(), Some(url));
        assert_eq!(c.effective_transport(), want, "{url}");
        assert!(c.command_line().is_none());
    }
    let mut c = RunConfig::new("x", Source::remote("https://h/sse"));
    c.transport = Some(Transport::StreamableHttp);
    assert_eq!(c.effective_transport(), Transport::StreamableHttp);
}

#[test]
fn npx_runs_with_yes_then_extra_args() {
    let mut c = RunConfig::new("x", Source::npx("@modelcontextprotocol/server-everything@2025.1.1"));
    c.args = vec!["stdio".into()];
    assert_eq!(
        line(&c),
        ("npx".into(), vec!["-y".into(), "@modelcontextprotocol/server-everything@2025.1.1".into(), "stdio".into()])
    );
}

#[test]
fn uvx_uses_its_own_syntax_for_exact_versions_and_from_for_the_rest() {
    let cases: [(&str, &[&str]); 5] = [
        ("mcp-server-time", &["mcp-server-time"]),
        ("mcp-server-time@0.6.2", &["mcp-server-time@0.6.2"]),
        ("mcp-server-time@latest", &["mcp-server-time@latest"]),
        ("mcp-server-time==0.6.2", &["--from", "mcp-server-time==0.6.2", "mcp-server-time"]),
        ("mcp-server-fetch[cli]>=1.0,<2", &["--from", "mcp-server-fetch[cli]>=1.0,<2", "mcp-server-fetch"]),
    ];
    for (spec, want) in cases {
        let mut c = RunConfig::new("x", Source::uvx(spec));
        c.args = vec!["--local-timezone".into(), "UTC".into()];
        let (program, args) = line(&c);
        assert_eq!(program, "uvx");
        let mut expected: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        expected.extend(["--local-timezone".to_owned(), "UTC".to_owned()]);
        assert_eq!(args, expected, "{spec}");
    }
}

#[test]
fn command_args_come_before_extra_args() {
    let mut c = RunConfig::new("x", Source::command("/usr/bin/python3", ["server.py"]));
    c.args = vec!["--debug".into()];
    assert_eq!(line(&c), ("/usr/bin/python3".into(), vec!["server.py".into(), "--debug".into()]));
    assert!(RunConfig::new("x", Source::image("i")).command_line().is_none());
}
