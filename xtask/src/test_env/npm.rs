//! Installs Node 22, a pinned npm and the npm tools into version-keyed prefixes. Node 22 and
//! npm are bootstrapped with the machine's own npm; everything else is installed by Node 22
//! running the pinned npm, so install scripts also see Node 22.

use super::cache::{self, Cache};
use super::pins::{self, NpmTool};
use crate::run_cmd;
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One `npm install` of a single package; generous because a cold npm cache downloads a lot.
const INSTALL_LIMIT: Duration = Duration::from_secs(15 * 60);

/// Node 22 and the pinned npm, as installed.
pub struct Node {
    /// The `node` executable.
    pub node: PathBuf,
    /// npm's `bin/npm-cli.js` and `bin/npx-cli.js`.
    pub npm_cli: PathBuf,
    pub npx_cli: PathBuf,
}

/// Where one installed npm package's files are.
pub fn node_modules(cache: &Cache, tool: &NpmTool) -> PathBuf {
    cache.npm_prefix(tool.name, tool.version).join("node_modules")
}

/// Installs Node 22 and npm (if missing). Returns them and how many packages it installed.
pub fn ensure_node(cache: &Cache) -> Result<(Node, usize)> {
    let mut installed = 0;
    for tool in [&pins::NODE, &pins::NPM] {
        if install(cache, tool, &Installer::System)? {
            installed += 1;
        }
    }
    let node = node_modules(cache, &pins::NODE).join(pins::NODE.name).join("bin").join("node");
    let npm_bin = node_modules(cache, &pins::NPM).join("npm").join("bin");
    let found = Node { node, npm_cli: npm_bin.join("npm-cli.js"), npx_cli: npm_bin.join("npx-cli.js") };
    for path in [&found.node, &found.npm_cli, &found.npx_cli] {
        if !path.is_file() {
            bail!(
                "{} is missing after install; delete {} and retry",
                path.display(),
                cache.root().join("npm").display()
            );
        }
    }
    Ok((found, installed))
}

/// Installs every npm tool (if missing) with Node 22's npm; returns how many it installed.
pub fn ensure_tools(cache: &Cache, node: &Node) -> Result<usize> {
    let mut installed = 0;
    for tool in pins::NPM_TOOLS {
        if install(cache, tool, &Installer::Node22(node))? {
            installed += 1;
        }
        for (_, bin_name) in tool.commands {
            let entry = node_modules(cache, tool).join(".bin").join(bin_name);
            if !entry.exists() {
                bail!("{}@{} did not provide {bin_name}", tool.name, tool.version);
            }
        }
    }
    Ok(installed)
}

/// Installs one more npm package (if missing) with Node 22's npm, into the same version-keyed
/// prefix layout as the test tools; returns its `node_modules` and whether it installed now.
/// `cargo xtask bench` installs its peers this way.
pub fn ensure_package(cache: &Cache, node: &Node, tool: &NpmTool) -> Result<(PathBuf, bool)> {
    let installed = install(cache, tool, &Installer::Node22(node))?;
    Ok((node_modules(cache, tool), installed))
}

/// Packages the tests run through `npx -y <name>@<version>` offline (as `apiary run npx://…`
/// does). `npm install` caches only the full packument; npx asks for the abbreviated one and,
/// offline, finds nothing. One run with `--prefer-offline` caches what npx needs (and is quick
/// when it is already there). The npm cache lives outside `$APIARY_CACHE`, so no marker file
/// could tell whether it is still warm: the run itself is the check.
pub const NPX_RUN: &[&str] = &["@modelcontextprotocol/server-everything"];

/// Bound on one warming run of npx (a cold cache downloads the package's dependencies).
const NPX_WARM_LIMIT: Duration = Duration::from_secs(5 * 60);

/// Warms npm's cache for every package in [`NPX_RUN`] at its pinned version.
pub fn warm_npx(node: &Node) -> Result<()> {
    for name in NPX_RUN {
        let tool = pins::NPM_TOOLS
            .iter()
            .find(|t| t.name == *name)
            .with_context(|| format!("{name} is not a pinned npm tool"))?;
        let mut cmd = Command::new(&node.node);
        cmd.arg(&node.npx_cli)
            .args(["-y", &format!("{}@{}", tool.name, tool.version), "stdio"])
            .env("PATH", path_with(node_dir(node)?)?)
            .env("npm_config_prefer_offline", "true")
            .current_dir(std::env::temp_dir());
        // stdin is closed at once, so the stdio server exits as soon as it has started.
        let out = run_cmd::capture(&mut cmd, NPX_WARM_LIMIT)?;
        if !out.status.success() {
            bail!("`npx -y {}@{} stdio` failed ({}):\n{}", tool.name, tool.version, out.status, out.stderr);
        }
    }
    Ok(())
}

/// Which npm performs an install.
enum Installer<'a> {
    /// The machine's `npm` from PATH (bootstrap only).
    System,
    /// The pinned npm run by Node 22, with Node 22 first on PATH for install scripts.
    Node22(&'a Node),
}

fn install(cache: &Cache, tool: &NpmTool, installer: &Installer<'_>) -> Result<bool> {
    let prefix = cache.npm_prefix(tool.name, tool.version);
    cache::install_once(&prefix, |dir| {
        eprintln!("test-env: installing {}@{}", tool.name, tool.version);
        fs::write(dir.join("package.json"), package_json(tool))?;
        // One retry: a registry hiccup should not fail a whole CI run.
        let first = npm_install(dir, installer);
        if let Err(err) = &first {
            eprintln!("test-env: {err:#}; retrying once");
            return npm_install(dir, installer);
        }
        first
    })
    .with_context(|| format!("npm could not install {}@{}", tool.name, tool.version))
}

fn npm_install(dir: &Path, installer: &Installer<'_>) -> Result<()> {
    let mut cmd = match installer {
        Installer::System => Command::new("npm"),
        Installer::Node22(node) => {
            let mut cmd = Command::new(&node.node);
            cmd.arg(&node.npm_cli);
            cmd.env("PATH", path_with(node_dir(node)?)?);
            cmd
        }
    };
    cmd.args([
        "install",
        "--no-audit",
        "--no-fund",
        "--no-update-notifier",
        "--prefer-offline",
        "--omit=dev",
        "--loglevel=error",
    ])
    .current_dir(dir);
    run_cmd::run_ok(&mut cmd, INSTALL_LIMIT)
}

/// A package.json naming exactly one dependency at its exact version. Names and versions
/// are our own constants (checked in pins' tests), so no JSON escaping is needed.
fn package_json(tool: &NpmTool) -> String {
    format!(
        "{{\n  \"name\": \"apiary-test-tool\",\n  \"private\": true,\n  \"dependencies\": {{\n    \"{}\": \"{}\"\n  }}\n}}\n",
        tool.name, tool.version
    )
}

fn node_dir(node: &Node) -> Result<&Path> {
    node.node.parent().context("node path has no directory")
}

/// `dir` followed by the current PATH.
pub fn path_with(dir: &Path) -> Result<std::ffi::OsString> {
    let current = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::iter::once(dir.to_owned()).chain(std::env::split_paths(&current));
    std::env::join_paths(dirs).context("PATH contains a directory with ':' in its name")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_json_pins_the_exact_version() {
        let text = package_json(&pins::TS_SDK);
        assert!(text.contains("\"@modelcontextprotocol/sdk\": \"1.32.2\""), "{text}");
    }
}
