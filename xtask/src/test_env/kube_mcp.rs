//! kubernetes-mcp-server for seed 004's use cases: npm ships it as a prebuilt Go binary in
//! `kubernetes-mcp-server-linux-amd64`. The package is fetched with the pinned npm's `npm pack`
//! (no install, so no install scripts run) and untarred under
//! `$APIARY_CACHE/kubernetes-mcp-server/<version>/`, cached by version; tests find the binary
//! through `KUBERNETES_MCP_SERVER` in `tools.env`.

use super::cache::{self, Cache};
use super::npm::{self, Node};
use super::pins;
use crate::run_cmd;
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Fetching one tarball (tens of MB on a cold npm cache).
const PACK_LIMIT: Duration = Duration::from_secs(10 * 60);
const UNTAR_LIMIT: Duration = Duration::from_secs(2 * 60);
const CHECK_LIMIT: Duration = Duration::from_secs(60);

/// The binary inside the untarred package.
const BINARY: &str = "package/bin/kubernetes-mcp-server-linux-amd64";

/// Where the cached binary of the pinned version is (it may not exist yet).
pub fn binary(cache: &Cache) -> PathBuf {
    dir(cache).join(BINARY)
}

fn dir(cache: &Cache) -> PathBuf {
    cache.root().join("kubernetes-mcp-server").join(pins::KUBERNETES_MCP_SERVER_VERSION)
}

/// Fetches and unpacks the pinned version unless cached. Returns the binary and whether it
/// was installed now.
pub fn ensure(cache: &Cache, node: &Node) -> Result<(PathBuf, bool)> {
    let version = pins::KUBERNETES_MCP_SERVER_VERSION;
    let installed = cache::install_once(&dir(cache), |dir| {
        eprintln!("test-env: fetching {}@{version} (npm pack)", pins::KUBERNETES_MCP_SERVER_PACKAGE);
        let first = pack_and_untar(dir, node, version);
        if let Err(err) = &first {
            eprintln!("test-env: {err:#}; retrying once");
            clear(dir)?;
            return pack_and_untar(dir, node, version);
        }
        first
    })
    .with_context(|| format!("cannot install kubernetes-mcp-server {version}"))?;
    let binary = binary(cache);
    if !binary.is_file() {
        bail!("{} is missing; delete {} and rerun", binary.display(), dir(cache).display());
    }
    Ok((binary, installed))
}

fn clear(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() { fs::remove_dir_all(&path)? } else { fs::remove_file(&path)? }
    }
    Ok(())
}

fn pack_and_untar(dir: &Path, node: &Node, version: &str) -> Result<()> {
    let spec = format!("{}@{version}", pins::KUBERNETES_MCP_SERVER_PACKAGE);
    let mut pack = Command::new(&node.node);
    pack.arg(&node.npm_cli)
        .args(["pack", &spec, "--pack-destination", ".", "--no-update-notifier", "--loglevel=error"])
        .env("PATH", npm::path_with(node.node.parent().context("node path has no directory")?)?)
        .current_dir(dir);
    run_cmd::run_ok(&mut pack, PACK_LIMIT).with_context(|| format!("npm pack {spec}"))?;
    let tarball = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "tgz"))
        .with_context(|| format!("npm pack {spec} left no .tgz in {}", dir.display()))?;
    run_cmd::run_ok(Command::new("tar").arg("xzf").arg(&tarball).current_dir(dir), UNTAR_LIMIT)?;
    fs::remove_file(&tarball)?;
    Ok(())
}

/// Proves the binary runs and is the pinned version.
pub fn check(binary: &Path) -> Result<String> {
    let out = run_cmd::capture(Command::new(binary).arg("--version"), CHECK_LIMIT)?;
    let text = format!("{}{}", out.stdout, out.stderr);
    if !out.status.success() || !text.contains(pins::KUBERNETES_MCP_SERVER_VERSION) {
        bail!("`kubernetes-mcp-server --version` said {:?} ({})", text.trim(), out.status);
    }
    Ok(format!("kubernetes-mcp-server {}", text.trim()))
}
