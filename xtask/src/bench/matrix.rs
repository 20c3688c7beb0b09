//! What `cargo xtask bench` measures: the targets (the fixture directly, Apiary's proxy in its
//! modes, the peers), the cells (sessions × payload) and the exact command line of every process
//! a target needs. Pure data, so the command building is tested without starting anything.

use std::path::{Path, PathBuf};

/// One thing measured: what the load tool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The fixture server over HTTP, no proxy: the limit.
    Direct,
    /// `apiary run --foreground --stdio-mode <mode> -- fixture --stdio`.
    ApiaryStdio(StdioMode),
    /// `apiary proxy --target-uri <fixture over HTTP>`.
    ApiaryHttp,
    /// npm supergateway `--stateful`, fixture over stdio.
    Supergateway,
    /// npm mcp-proxy (punkpeye), fixture over stdio.
    NpmMcpProxy,
    /// PyPI mcp-proxy (sparfenyuk), fixture over stdio.
    PyMcpProxy,
    /// `thv proxy --target-uri <fixture over HTTP>` (HTTP → HTTP).
    ThvProxy,
}

/// Apiary's `--stdio-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdioMode {
    Auto,
    Shared,
    PerSession,
}

impl StdioMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StdioMode::Auto => "auto",
            StdioMode::Shared => "shared",
            StdioMode::PerSession => "per-session",
        }
    }
}

/// Every target, in the order they run and appear in the table.
pub const ALL_TARGETS: [Target; 9] = [
    Target::Direct,
    Target::ApiaryStdio(StdioMode::Auto),
    Target::ApiaryStdio(StdioMode::Shared),
    Target::ApiaryStdio(StdioMode::PerSession),
    Target::ApiaryHttp,
    Target::Supergateway,
    Target::NpmMcpProxy,
    Target::PyMcpProxy,
    Target::ThvProxy,
];

impl Target {
    /// Short name, matched by `--only` and used for file names.
    pub fn key(self) -> String {
        match self {
            Target::Direct => "direct".to_owned(),
            Target::ApiaryStdio(mode) => format!("apiary-stdio-{}", mode.as_str()),
            Target::ApiaryHttp => "apiary-http".to_owned(),
            Target::Supergateway => "supergateway".to_owned(),
            Target::NpmMcpProxy => "mcp-proxy-npm".to_owned(),
            Target::PyMcpProxy => "mcp-proxy-pypi".to_owned(),
            Target::ThvProxy => "thv-proxy".to_owned(),
        }
    }

    /// The first column of the table.
    pub fn label(self) -> String {
        match self {
            Target::Direct => "direct: fixture over HTTP".to_owned(),
            Target::ApiaryStdio(mode) => format!("Apiary → stdio ({})", mode.as_str()),
            Target::ApiaryHttp => "Apiary → HTTP".to_owned(),
            Target::Supergateway => "supergateway (npm) → stdio".to_owned(),
            Target::NpmMcpProxy => "mcp-proxy (npm) → stdio".to_owned(),
            Target::PyMcpProxy => "mcp-proxy (PyPI) → stdio".to_owned(),
            Target::ThvProxy => "thv proxy → HTTP".to_owned(),
        }
    }

    /// A peer (not Apiary, not the direct connection).
    pub fn is_peer(self) -> bool {
        matches!(self, Target::Supergateway | Target::NpmMcpProxy | Target::PyMcpProxy | Target::ThvProxy)
    }

    /// The Apiary target a peer is compared with: the same kind of upstream, Apiary's default
    /// stdio mode for the stdio bridges.
    pub fn apiary_counterpart(self) -> Option<Target> {
        match self {
            Target::Supergateway | Target::NpmMcpProxy | Target::PyMcpProxy => {
                Some(Target::ApiaryStdio(StdioMode::Auto))
            }
            Target::ThvProxy => Some(Target::ApiaryHttp),
            _ => None,
        }
    }

    /// Whether the target fronts the fixture served over HTTP (started first, measured with it).
    pub fn needs_http_fixture(self) -> bool {
        matches!(self, Target::ApiaryHttp | Target::ThvProxy)
    }
}

/// The sessions and payloads of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid {
    pub sessions: Vec<u32>,
    pub payloads: Vec<usize>,
}

impl Grid {
    /// The full matrix of the issue: 1, 8, 64 sessions; 64 B, 1 KiB, 64 KiB.
    pub fn full() -> Grid {
        Grid { sessions: vec![1, 8, 64], payloads: vec![64, 1024, 65536] }
    }

    /// `--quick`: a few cells.
    pub fn quick() -> Grid {
        Grid { sessions: vec![1, 8], payloads: vec![64] }
    }
}

/// One measurement: a target at a number of sessions and a payload size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub target: Target,
    pub sessions: u32,
    pub payload: usize,
}

/// The cells to run, target by target, then sessions, then payload; `only` keeps the targets
/// whose key contains one of its substrings (all when empty).
pub fn cells(grid: &Grid, only: &[String]) -> Vec<Cell> {
    let mut out = Vec::new();
    for target in ALL_TARGETS {
        let key = target.key();
        if !only.is_empty() && !only.iter().any(|o| key.contains(o.as_str())) {
            continue;
        }
        for &sessions in &grid.sessions {
            for &payload in &grid.payloads {
                out.push(Cell { target, sessions, payload });
            }
        }
    }
    out
}

/// The programs a run uses.
pub struct Bins {
    pub apiary: PathBuf,
    pub fixture: PathBuf,
    pub node: Result<PathBuf, String>,
    pub supergateway: Result<PathBuf, String>,
    pub npm_mcp_proxy: Result<PathBuf, String>,
    pub py_mcp_proxy: Result<PathBuf, String>,
    pub thv: Result<PathBuf, String>,
}

/// A process to start: program, arguments and extra environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Where its MCP endpoint is: printed on its stdout, or at a port chosen for it.
    pub url: UrlFrom,
}

/// How the URL of a started process is learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlFrom {
    /// The first `http://…/mcp` it prints on stdout (Apiary and the fixture do).
    Stdout,
    /// `http://127.0.0.1:<port>/mcp`, the port given on its command line.
    Port(u16),
}

/// Most per-session children Apiary may start: the 64-session cells plus the readiness check.
pub const MAX_SESSION_CHILDREN: u32 = 128;

/// The fixture over HTTP on a free port.
pub fn fixture_http(bins: &Bins) -> Spec {
    Spec {
        program: bins.fixture.clone(),
        args: vec!["--http".into(), "127.0.0.1:0".into()],
        env: Vec::new(),
        url: UrlFrom::Stdout,
    }
}

/// The main process of `target`. `port` is a free port for peers that need one given;
/// `upstream` the fixture's URL for targets that front it over HTTP; `state_dir` an empty
/// directory for Apiary's workload state. Fails with the reason when a peer is not installed.
pub fn main_spec(
    target: Target,
    bins: &Bins,
    port: u16,
    upstream: Option<&str>,
    state_dir: &Path,
) -> Result<Spec, String> {
    let fixture = bins.fixture.to_string_lossy().into_owned();
    let upstream = || upstream.map(str::to_owned).ok_or_else(|| "no upstream URL".to_owned());
    let port_s = port.to_string();
    let spec = match target {
        Target::Direct => fixture_http(bins),
        Target::ApiaryStdio(mode) => Spec {
            program: bins.apiary.clone(),
            args: strings(&[
                "run",
                "--foreground",
                "--isolation",
                "none",
                "--name",
                &format!("bench-{}", mode.as_str()),
                "--stdio-mode",
                mode.as_str(),
                "--max-session-children",
                &MAX_SESSION_CHILDREN.to_string(),
                "--",
                &fixture,
                "--stdio",
            ]),
            env: vec![("APIARY_STATE_DIR".into(), state_dir.to_string_lossy().into_owned())],
            url: UrlFrom::Stdout,
        },
        Target::ApiaryHttp => Spec {
            program: bins.apiary.clone(),
            args: strings(&["proxy", "bench-http", "--target-uri", &upstream()?]),
            env: vec![("APIARY_STATE_DIR".into(), state_dir.to_string_lossy().into_owned())],
            url: UrlFrom::Stdout,
        },
        Target::Supergateway => Spec {
            program: found(&bins.node, "Node 22")?,
            args: strings(&[
                &found(&bins.supergateway, "supergateway")?.to_string_lossy(),
                "--stdio",
                &format!("{} --stdio", shell_quote(&fixture)),
                "--outputTransport",
                "streamableHttp",
                "--stateful",
                "--port",
                &port_s,
                "--logLevel",
                "none",
            ]),
            env: Vec::new(),
            url: UrlFrom::Port(port),
        },
        Target::NpmMcpProxy => Spec {
            program: found(&bins.node, "Node 22")?,
            args: strings(&[
                &found(&bins.npm_mcp_proxy, "mcp-proxy (npm)")?.to_string_lossy(),
                "--port",
                &port_s,
                "--host",
                "127.0.0.1",
                "--server",
                "stream",
                "--",
                &fixture,
                "--stdio",
            ]),
            env: Vec::new(),
            url: UrlFrom::Port(port),
        },
        Target::PyMcpProxy => Spec {
            program: found(&bins.py_mcp_proxy, "mcp-proxy (PyPI)")?,
            args: strings(&[
                "--port",
                &port_s,
                "--host",
                "127.0.0.1",
                "--log-level",
                "WARNING",
                "--",
                &fixture,
                "--stdio",
            ]),
            env: Vec::new(),
            url: UrlFrom::Port(port),
        },
        Target::ThvProxy => Spec {
            program: found(&bins.thv, "thv")?,
            // Its transparent proxy appends the request's path to the target's: give the origin.
            args: strings(&[
                "proxy",
                "bench",
                "--target-uri",
                origin(&upstream()?),
                "--host",
                "127.0.0.1",
                "--port",
                &port_s,
            ]),
            // Without a container runtime thv refuses to start unless told it runs in Kubernetes;
            // and there is no network to check for updates on.
            env: vec![
                ("TOOLHIVE_RUNTIME".into(), "kubernetes".into()),
                ("TOOLHIVE_SKIP_UPDATE_CHECK".into(), "true".into()),
            ],
            url: UrlFrom::Port(port),
        },
    };
    Ok(spec)
}

/// The `apiary-bench` arguments for one cell (the load tool on CPU 0, the target's processes on
/// CPU 1).
pub fn bench_args(cell: &Cell, url: &str, pids: &[u32], warmup: u64, duration: u64, json: &Path) -> Vec<String> {
    let mut args = strings(&[
        "--url",
        url,
        "--sessions",
        &cell.sessions.to_string(),
        "--payload-bytes",
        &cell.payload.to_string(),
        "--warmup",
        &warmup.to_string(),
        "--duration",
        &duration.to_string(),
        "--pin-self",
        "0",
        "--pin-target",
        "1",
        "--label",
        &cell.target.label(),
        "--json",
        &json.to_string_lossy(),
    ]);
    for pid in pids {
        args.push("--pid".into());
        args.push(pid.to_string());
    }
    args
}

/// `http://host:port` of `http://host:port/path`.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    url[after_scheme..].find('/').map_or(url, |i| &url[..after_scheme + i])
}

fn found(path: &Result<PathBuf, String>, what: &str) -> Result<PathBuf, String> {
    path.clone().map_err(|why| format!("{what} is not installed: {why}"))
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

/// `text` as one word for `sh -c` (supergateway runs its `--stdio` command through a shell).
fn shell_quote(text: &str) -> String {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+=:,".contains(c)) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bins() -> Bins {
        Bins {
            apiary: "/t/apiary".into(),
            fixture: "/t/apiary-testkit-server".into(),
            node: Ok("/c/node".into()),
            supergateway: Ok("/c/sg/.bin/supergateway".into()),
            npm_mcp_proxy: Ok("/c/mp/.bin/mcp-proxy".into()),
            py_mcp_proxy: Ok("/c/py/venv/bin/mcp-proxy".into()),
            thv: Err("go install failed".into()),
        }
    }

    #[test]
    fn full_grid_is_every_target_by_three_sessions_by_three_payloads() {
        let all = cells(&Grid::full(), &[]);
        assert_eq!(all.len(), 9 * 3 * 3);
        assert_eq!(all[0], Cell { target: Target::Direct, sessions: 1, payload: 64 });
        assert_eq!(all[8], Cell { target: Target::Direct, sessions: 64, payload: 65536 });
        assert_eq!(all.last().unwrap().target, Target::ThvProxy);
    }

    #[test]
    fn only_keeps_targets_whose_key_contains_a_substring() {
        let some = cells(&Grid::quick(), &["mcp-proxy".into()]);
        let targets: Vec<Target> = some.iter().map(|c| c.target).collect();
        assert_eq!(targets, [Target::NpmMcpProxy, Target::NpmMcpProxy, Target::PyMcpProxy, Target::PyMcpProxy]);
        let stdio = cells(&Grid { sessions: vec![8], payloads: vec![64] }, &["stdio".into(), "thv".into()]);
        assert_eq!(stdio.len(), 4);
        assert!(cells(&Grid::full(), &["nothing-matches".into()]).is_empty());
    }

    #[test]
    fn keys_are_unique() {
        let mut keys: Vec<String> = ALL_TARGETS.iter().map(|t| t.key()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), ALL_TARGETS.len());
    }

    #[test]
    fn peers_are_compared_with_the_apiary_target_of_their_upstream_kind() {
        assert_eq!(Target::Supergateway.apiary_counterpart(), Some(Target::ApiaryStdio(StdioMode::Auto)));
        assert_eq!(Target::ThvProxy.apiary_counterpart(), Some(Target::ApiaryHttp));
        assert_eq!(Target::ApiaryHttp.apiary_counterpart(), None);
        assert!(ALL_TARGETS.iter().filter(|t| t.is_peer()).all(|t| t.apiary_counterpart().is_some()));
    }

    #[test]
    fn apiary_stdio_runs_the_fixture_in_the_asked_mode_with_its_own_state() {
        let spec = main_spec(Target::ApiaryStdio(StdioMode::PerSession), &bins(), 0, None, Path::new("/s/3")).unwrap();
        assert_eq!(spec.program, PathBuf::from("/t/apiary"));
        let line = spec.args.join(" ");
        assert!(line.starts_with("run --foreground --isolation none"), "{line}");
        assert!(line.contains("--stdio-mode per-session --max-session-children 128"), "{line}");
        assert!(line.ends_with("-- /t/apiary-testkit-server --stdio"), "{line}");
        assert_eq!(spec.env, [("APIARY_STATE_DIR".to_owned(), "/s/3".to_owned())]);
        assert_eq!(spec.url, UrlFrom::Stdout);
    }

    #[test]
    fn http_targets_need_the_upstream_url() {
        let b = bins();
        assert!(main_spec(Target::ApiaryHttp, &b, 0, None, Path::new("/s")).is_err());
        let spec = main_spec(Target::ApiaryHttp, &b, 0, Some("http://127.0.0.1:9/mcp"), Path::new("/s")).unwrap();
        assert_eq!(spec.args, ["proxy", "bench-http", "--target-uri", "http://127.0.0.1:9/mcp"]);
        assert!(Target::ApiaryHttp.needs_http_fixture() && Target::ThvProxy.needs_http_fixture());
        assert!(!Target::Supergateway.needs_http_fixture());
    }

    #[test]
    fn peers_listen_on_the_given_port_in_front_of_the_stdio_fixture() {
        let b = bins();
        let sg = main_spec(Target::Supergateway, &b, 4100, None, Path::new("/s")).unwrap();
        assert_eq!(sg.program, PathBuf::from("/c/node"));
        assert_eq!(sg.args[0], "/c/sg/.bin/supergateway");
        assert_eq!(sg.args[1..3], ["--stdio", "/t/apiary-testkit-server --stdio"]);
        assert!(sg.args.join(" ").contains("--outputTransport streamableHttp --stateful --port 4100"));
        assert_eq!(sg.url, UrlFrom::Port(4100));
        let mp = main_spec(Target::NpmMcpProxy, &b, 4101, None, Path::new("/s")).unwrap();
        assert!(
            mp.args
                .join(" ")
                .ends_with("--port 4101 --host 127.0.0.1 --server stream -- /t/apiary-testkit-server --stdio")
        );
        let py = main_spec(Target::PyMcpProxy, &b, 4102, None, Path::new("/s")).unwrap();
        assert_eq!(py.program, PathBuf::from("/c/py/venv/bin/mcp-proxy"));
        assert_eq!(py.args[..2], ["--port", "4102"]);
    }

    #[test]
    fn a_missing_peer_is_a_reason_not_a_spec() {
        let why = main_spec(Target::ThvProxy, &bins(), 1, Some("http://x/mcp"), Path::new("/s")).unwrap_err();
        assert!(why.contains("thv is not installed: go install failed"), "{why}");
        let mut b = bins();
        b.thv = Ok("/c/thv".into());
        let thv = main_spec(Target::ThvProxy, &b, 4103, Some("http://127.0.0.1:9/mcp"), Path::new("/s")).unwrap();
        assert_eq!(
            thv.args,
            ["proxy", "bench", "--target-uri", "http://127.0.0.1:9", "--host", "127.0.0.1", "--port", "4103"]
        );
        assert!(thv.env.contains(&("TOOLHIVE_RUNTIME".to_owned(), "kubernetes".to_owned())));
        assert_eq!(origin("http://h:1"), "http://h:1");
    }

    #[test]
    fn shell_quoting_keeps_plain_paths_and_quotes_the_rest() {
        assert_eq!(shell_quote("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
    }

    #[test]
    fn bench_args_pin_and_measure_every_pid() {
        let cell = Cell { target: Target::ApiaryHttp, sessions: 64, payload: 1024 };
        let args = bench_args(&cell, "http://h/mcp", &[10, 11], 1, 4, Path::new("/w/x.json"));
        let line = args.join(" ");
        assert!(line.starts_with("--url http://h/mcp --sessions 64 --payload-bytes 1024 --warmup 1 --duration 4"));
        assert!(line.contains("--pin-self 0 --pin-target 1"));
        assert!(line.ends_with("--json /w/x.json --pid 10 --pid 11"), "{line}");
    }
}
