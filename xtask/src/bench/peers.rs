//! Installs the peers `cargo xtask bench` measures, pinned (`test_env::pins`) and cached by
//! version outside the repository, like the test tools: the two npm bridges with the cache's
//! Node 22, sparfenyuk's mcp-proxy in a venv of its own, and ToolHive's `thv` with `go install`.
//! A peer that cannot be installed is not fatal: its rows say why.

use crate::run_cmd;
use crate::test_env::cache::{self, Cache};
use crate::test_env::{npm, pins, python};
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PIP_LIMIT: Duration = Duration::from_secs(15 * 60);
/// `go install` of ToolHive downloads a few hundred modules and compiles them (minutes on 2 cores).
const GO_LIMIT: Duration = Duration::from_secs(30 * 60);

/// What each peer runs as: an executable (or a script for Node), or why it is missing.
pub struct Peers {
    /// Node 22, which runs the npm peers.
    pub node: Result<PathBuf, String>,
    pub supergateway: Result<PathBuf, String>,
    pub npm_mcp_proxy: Result<PathBuf, String>,
    pub py_mcp_proxy: Result<PathBuf, String>,
    pub thv: Result<PathBuf, String>,
}

/// Installs whatever is missing (holding the test-env lock, so a concurrent `test-env` does
/// not install into the same cache at the same time) and says where each peer is.
pub fn ensure() -> Result<Peers> {
    let cache = Cache::from_env()?;
    let _lock = cache::RunLock::acquire(&cache.lock_path())?;
    let node = npm::ensure_node(&cache).map(|(node, _)| node);
    let npm_peer = |tool: &pins::NpmTool| -> Result<PathBuf, String> {
        let node = node.as_ref().map_err(|e| format!("Node 22: {e:#}"))?;
        let (modules, _) = npm::ensure_package(&cache, node, tool).map_err(|e| format!("{e:#}"))?;
        let (_, bin) = tool.commands.first().ok_or("no command pinned")?;
        let script = modules.join(".bin").join(bin);
        if script.exists() { Ok(script) } else { Err(format!("{}@{} has no {bin}", tool.name, tool.version)) }
    };
    let supergateway = npm_peer(&pins::BENCH_SUPERGATEWAY);
    let npm_mcp_proxy = npm_peer(&pins::BENCH_NPM_MCP_PROXY);
    let peers = Peers {
        supergateway,
        npm_mcp_proxy,
        py_mcp_proxy: ensure_py_mcp_proxy(&cache).map_err(|e| format!("{e:#}")),
        thv: ensure_thv(&cache).map_err(|e| format!("{e:#}")),
        node: node.map(|n| n.node).map_err(|e| format!("{e:#}")),
    };
    for (name, found) in [
        ("supergateway", &peers.supergateway),
        ("mcp-proxy (npm)", &peers.npm_mcp_proxy),
        ("mcp-proxy (PyPI)", &peers.py_mcp_proxy),
        ("thv", &peers.thv),
    ] {
        match found {
            Ok(path) => eprintln!("bench: {name:<17} {}", path.display()),
            Err(why) => eprintln!("bench: {name:<17} NOT INSTALLED: {why}"),
        }
    }
    Ok(peers)
}

/// The directory of one bench peer version in the cache.
fn peer_dir(cache: &Cache, name_at_version: &str) -> PathBuf {
    cache.root().join("bench").join(name_at_version)
}

/// `mcp-proxy==<pin>` in its own venv (its dependencies are not in the tests' venv, and must
/// not move it); the resolved set is written to `requirements.lock` beside it.
fn ensure_py_mcp_proxy(cache: &Cache) -> Result<PathBuf> {
    let version = pins::BENCH_PY_MCP_PROXY_VERSION;
    let dir = peer_dir(cache, &format!("pypi-mcp-proxy@{version}"));
    cache::install_once(&dir, |dir| {
        eprintln!("bench: installing mcp-proxy=={version} (PyPI) into {}", dir.display());
        let base = python::find_base()?;
        let mut venv = Command::new(&base.exe);
        venv.args(["-m", "venv"]).arg(dir.join("venv"));
        run_cmd::run_ok(&mut venv, PIP_LIMIT)?;
        let python = dir.join("venv").join("bin").join("python");
        let mut pip = Command::new(&python);
        pip.args(["-m", "pip", "install", "--quiet", "--no-input", "--disable-pip-version-check"])
            .arg(format!("mcp-proxy=={version}"));
        run_cmd::run_ok(&mut pip, PIP_LIMIT)?;
        let mut freeze = Command::new(&python);
        freeze.args(["-m", "pip", "freeze", "--disable-pip-version-check"]);
        let frozen = run_cmd::capture(&mut freeze, PIP_LIMIT)?;
        fs::write(dir.join("requirements.lock"), frozen.stdout).context("cannot write requirements.lock")?;
        Ok(())
    })?;
    existing(dir.join("venv").join("bin").join("mcp-proxy"), &dir)
}

/// `thv` built from source through the Go module proxy into the cache.
fn ensure_thv(cache: &Cache) -> Result<PathBuf> {
    let version = pins::BENCH_THV_VERSION;
    let dir = peer_dir(cache, &format!("thv@{version}"));
    cache::install_once(&dir, |dir| {
        eprintln!("bench: go install github.com/stacklok/toolhive/cmd/thv@v{version} (minutes, once)");
        let mut go = Command::new("go");
        go.args(["install", &format!("github.com/stacklok/toolhive/cmd/thv@v{version}")])
            .env("GOBIN", dir)
            .env("GOFLAGS", "-buildvcs=false")
            .current_dir(dir);
        run_cmd::run_ok(&mut go, GO_LIMIT).context("go install of thv (is the Go module proxy reachable?)")
    })?;
    existing(dir.join("thv"), &dir)
}

fn existing(path: PathBuf, dir: &Path) -> Result<PathBuf> {
    if !path.is_file() {
        bail!("{} is missing; delete {} and rerun", path.display(), dir.display());
    }
    Ok(path)
}
