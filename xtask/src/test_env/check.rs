//! Proves the installed tools work the way tests use them: through the tools bin, Node 22
//! everywhere (also for npx children), the pinned versions, real MCP servers answering an
//! `initialize` over stdio, `uvx mcp-server-time` with the network forbidden, and Keycloak's
//! `kc.sh --version` on the chosen Java.

use super::cache::Cache;
use super::keycloak::{self, Keycloak};
use super::npm;
use super::pins;
use crate::run_cmd;
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Bound for one check; servers start in well under a second when warm.
const CHECK_LIMIT: Duration = Duration::from_secs(60);

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"apiary-test-env","version":"0"}}}"#;

type Check = (&'static str, Box<dyn FnOnce() -> Result<String> + Send>);

/// Runs every check in parallel; returns one line per check, or an error naming all
/// failures.
pub fn run_all(cache: &Cache, kc: &Keycloak, jaeger: &Path, kube_mcp: &Path) -> Result<Vec<String>> {
    let bin = cache.bin();
    let sdk_modules = npm::node_modules(cache, &pins::TS_SDK);
    let mut checks = checks(&bin, sdk_modules);
    let kc = Keycloak { home: kc.home.clone(), java_home: kc.java_home.clone() };
    checks.push(("keycloak", Box::new(move || keycloak::check(&kc))));
    let jaeger = jaeger.to_owned();
    checks.push(("jaeger", Box::new(move || super::jaeger::check(&jaeger))));
    let kube_mcp = kube_mcp.to_owned();
    checks.push(("kubernetes-mcp-server", Box::new(move || super::kube_mcp::check(&kube_mcp))));
    let handles: Vec<_> = checks
        .into_iter()
        .map(|(name, check)| {
            (
                name,
                thread::spawn(move || {
                    let started = Instant::now();
                    (check(), started.elapsed())
                }),
            )
        })
        .collect();
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for (name, handle) in handles {
        match handle.join() {
            Ok((Ok(detail), took)) => {
                lines.push(format!("ok   {name}: {detail} [{:.1}s]", took.as_secs_f64()));
            }
            Ok((Err(err), _)) => failures.push(format!("FAIL {name}: {err:#}")),
            Err(_) => failures.push(format!("FAIL {name}: check panicked")),
        }
    }
    if !failures.is_empty() {
        for line in &lines {
            eprintln!("  {line}");
        }
        bail!("tool checks failed:\n  {}", failures.join("\n  "));
    }
    Ok(lines)
}

/// Confirms every file in `targets` exists (following symlinks); returns how many.
pub fn files_present(targets: &[PathBuf]) -> Result<usize> {
    let missing: Vec<String> =
        targets.iter().filter(|path| !path.exists()).map(|path| path.display().to_string()).collect();
    if !missing.is_empty() {
        bail!("missing from the tool cache (delete the directory holding it and rerun): {}", missing.join(", "));
    }
    Ok(targets.len())
}

fn checks(bin: &Path, sdk_modules: PathBuf) -> Vec<Check> {
    let tool = |name: &str| bin.join(name);
    let node_version = format!("v{}", pins::NODE.version);
    let node = tool("node");
    let npx = tool("npx");
    let npm_tool = tool("npm");
    let conformance = tool("conformance");
    let inspector = tool("mcp-inspector-cli");
    let everything = tool("mcp-server-everything");
    let filesystem = tool("mcp-server-filesystem");
    let python = tool("python3");
    let time = tool("mcp-server-time");
    let uvx = tool("uvx");
    let node_for_sdk = node.clone();
    let expected_npx = node_version.clone();
    vec![
        ("node", Box::new(move || expect_output(Command::new(node), &["--version"], &node_version))),
        (
            "npx children run Node 22",
            // `npm exec -c` runs a shell command the way npx runs a package's bin.
            Box::new(move || expect_output(Command::new(npx), &["-c", "node --version"], &expected_npx)),
        ),
        ("npm", Box::new(move || expect_output(Command::new(npm_tool), &["--version"], pins::NPM.version))),
        (
            "conformance",
            Box::new(move || expect_output(Command::new(conformance), &["--version"], npm_version("conformance"))),
        ),
        (
            "mcp-inspector-cli",
            Box::new(move || {
                expect_output(Command::new(inspector), &["--help"], "Usage")
                    .map(|_| format!("{} --help", npm_version("inspector-cli")))
            }),
        ),
        ("mcp-server-everything", Box::new(move || mcp_initialize(Command::new(everything)))),
        (
            "mcp-server-filesystem",
            Box::new(move || {
                let mut cmd = Command::new(filesystem);
                cmd.arg(std::env::temp_dir());
                mcp_initialize(cmd)
            }),
        ),
        ("TypeScript SDK", Box::new(move || typescript_sdk(&node_for_sdk, &sdk_modules))),
        (
            "python3 has mcp",
            Box::new(move || {
                expect_output(
                    Command::new(python),
                    &["-c", "import mcp, importlib.metadata as m; print(m.version('mcp'))"],
                    pins::PY_MCP_VERSION,
                )
            }),
        ),
        ("mcp-server-time", Box::new(move || mcp_initialize(Command::new(time)))),
        (
            "uvx mcp-server-time (offline)",
            Box::new(move || {
                let mut cmd = Command::new(uvx);
                cmd.arg("mcp-server-time").env("UV_OFFLINE", "1");
                mcp_initialize(cmd)
            }),
        ),
    ]
}

/// The pinned version of an `@modelcontextprotocol/<short>` npm tool.
fn npm_version(short: &str) -> &'static str {
    pins::NPM_TOOLS.iter().find(|t| t.name.ends_with(short)).map_or("?", |t| t.version)
}

/// Runs `cmd args` and requires success and `expected` in its stdout's first line.
fn expect_output(mut cmd: Command, args: &[&str], expected: &str) -> Result<String> {
    cmd.args(args);
    let out = run_cmd::capture(&mut cmd, CHECK_LIMIT)?;
    let first = out.stdout.lines().next().unwrap_or("").trim().to_owned();
    if !out.status.success() || !first.contains(expected) {
        bail!("expected {expected:?}, got {first:?} ({}); stderr: {}", out.status, out.stderr.trim());
    }
    Ok(first)
}

/// Loads the SDK's client the way a test script would (resolving from its node_modules)
/// and reads its version.
fn typescript_sdk(node: &Path, modules: &Path) -> Result<String> {
    let script = format!(
        "const r = require('module').createRequire({dir:?} + '/');\
         r('@modelcontextprotocol/sdk/client/index.js');\
         r('@modelcontextprotocol/sdk/client/stdio.js');\
         console.log(require({pkg:?}).version);",
        dir = modules.to_string_lossy(),
        pkg = modules.join("@modelcontextprotocol/sdk/package.json").to_string_lossy(),
    );
    let mut cmd = Command::new(node);
    cmd.args(["-e", &script]);
    expect_output(cmd, &[], pins::TS_SDK.version)
}

/// Starts an MCP server on stdio, sends `initialize`, and waits for its result; then stops
/// it. Returns the server's name and version.
fn mcp_initialize(mut cmd: Command) -> Result<String> {
    let what = run_cmd::describe(&cmd);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().with_context(|| format!("cannot start `{what}`"))?;
    let (tx, rx) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let sent = child.stdin.as_mut().map(|stdin| writeln!(stdin, "{INITIALIZE}").and_then(|()| stdin.flush()));
    let deadline = Instant::now() + CHECK_LIMIT;
    let mut answer = None;
    if matches!(sent, Some(Ok(()))) {
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = rx.recv_timeout(left) else {
                break;
            };
            let compact: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            if compact.contains("\"id\":1") && compact.contains("\"result\":") {
                answer = Some(compact);
                break;
            }
        }
    }
    run_cmd::kill_tree(&mut child);
    let Some(answer) = answer else {
        bail!("`{what}` gave no initialize result within {}s", CHECK_LIMIT.as_secs());
    };
    Ok(server_info(&answer).unwrap_or_else(|| "initialized".to_owned()))
}

/// `name version` from a compact initialize result, without a JSON parser.
fn server_info(compact: &str) -> Option<String> {
    let info = &compact[compact.find("\"serverInfo\":")?..];
    let field = |key: &str| -> Option<String> {
        let start = info.find(&format!("\"{key}\":\""))? + key.len() + 4;
        let len = info[start..].find('"')?;
        Some(info[start..start + len].to_owned())
    };
    Some(format!("{} {}", field("name")?, field("version")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_server_info() {
        let line = r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","serverInfo":{"name":"mcp-time","version":"2026.10.19"}}}"#;
        assert_eq!(server_info(line).as_deref(), Some("mcp-time 2026.10.19"));
    }
}
