//! The process sandbox: the default home of package and command servers on Linux.
//!
//! The launcher does not start the server itself. It starts `apiary __sandbox-exec --spec JSON --
//! PROGRAM ARGS` (a hidden subcommand of the one `apiary` binary, so there is no second binary to
//! install and find), and that helper, while it is still single-threaded, builds the sandbox and
//! `execve`s the server, in this order:
//!
//! 1. `no_new_privs`;
//! 2. new user (the caller's uid/gid mapped to themselves), mount, pid, ipc, uts and — for a
//!    profile without network — network namespaces;
//! 3. a fork: the child is pid 1 of the new pid namespace and reaps; it builds a new root on a
//!    tmpfs with the system directories, the server's own files and the profile's `read` paths
//!    bound read-only, the `write` paths read-write, a private `/tmp`, a minimal `/dev` and a
//!    fresh `/proc`, then `pivot_root`s into it;
//! 4. a second fork for the server: rlimits, an empty capability bounding set, Landlock rules that
//!    match the mounts (and deny TCP for `none`), a seccomp allow-list last, then `execve`.
//!
//! [`SandboxSpec`] is what the launcher hands over; [`exec::run`] is the helper.

pub mod bridge;
mod confine;
pub mod egress;
pub mod exec;
mod fsview;
pub(crate) mod sys;

use std::path::{Path, PathBuf};

use apiary_config::{Ecosystem, NetworkAccess, PermissionProfile, RunConfig, Source};
use serde::{Deserialize, Serialize};

/// Name of the hidden subcommand that runs [`exec::run`].
pub const SUBCOMMAND: &str = "__sandbox-exec";

/// Host directories every sandboxed server sees read-only (when they exist): programs, shared
/// libraries and the system configuration they read (`/etc`: resolver, certificates, users).
pub const SYSTEM_DIRS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"];

/// Open files a sandboxed server may hold, unless the caller's hard limit is lower.
pub const DEFAULT_MAX_OPEN_FILES: u64 = 8192;
/// Processes (threads included) the server's user may have in its namespace.
pub const DEFAULT_MAX_PROCESSES: u64 = 4096;
/// Writable private memory (RLIMIT_DATA: heap and private writable mappings, not address space
/// merely reserved) a sandboxed server may have: bounds a runaway server well below what the
/// host has, and stays above what Node (at most ~4 GiB of heap) or a JVM uses by default.
pub const DEFAULT_MAX_MEMORY: u64 = 8 * 1024 * 1024 * 1024;
/// Size of the private `/tmp` and `/dev/shm` each (tmpfs pages are only used when written).
pub const TMPFS_BYTES: u64 = 512 * 1024 * 1024;

/// One host path made visible inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Path on the host.
    pub host: PathBuf,
    /// Path inside the sandbox.
    pub inside: PathBuf,
    /// Skip it silently when the host path does not exist (system directories, caches).
    #[serde(default)]
    pub optional: bool,
}

/// Everything the helper needs to build one server's sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// Bound read-only.
    pub read_only: Vec<Mount>,
    /// Bound read-write.
    pub read_write: Vec<Mount>,
    /// Keep the host's network (profile `network`); otherwise an empty network namespace and no
    /// TCP through Landlock.
    pub host_network: bool,
    /// Start anyway when the kernel refuses a building block, saying so on stderr.
    pub allow_degraded: bool,
    /// RLIMIT_NOFILE.
    pub max_open_files: u64,
    /// RLIMIT_NPROC.
    pub max_processes: u64,
    /// RLIMIT_AS in bytes, if any (off by default: V8 and the JVM reserve huge address ranges).
    pub max_address_space: Option<u64>,
    /// RLIMIT_DATA in bytes, if any (on by default, [`DEFAULT_MAX_MEMORY`]): an allocation past
    /// it fails with ENOMEM inside the sandbox.
    #[serde(default)]
    pub max_memory: Option<u64>,
    /// Working directory inside the sandbox (falls back to `/` when it is not visible there).
    pub cwd: Option<PathBuf>,
    /// For an allow-list profile: the egress proxy's socket, forwarded to `127.0.0.1:<port>`
    /// inside (see [`bridge`]); the only TCP the server may then open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<bridge::EgressBridge>,
    /// For an HTTP-transport server without the host's network: the Unix socket on the host
    /// that pid 1 forwards to the server's port inside (see [`bridge`]); the server may then bind
    /// that one TCP port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<bridge::InboundBridge>,
}

impl SandboxSpec {
    /// The sandbox a profile asks for: the system directories read-only, the profile's paths, its
    /// network, default rlimits.
    pub fn from_profile(profile: &PermissionProfile, allow_degraded: bool) -> Self {
        let system = SYSTEM_DIRS.iter().map(|d| Mount { host: d.into(), inside: d.into(), optional: true });
        let grant = |g: apiary_config::PathGrant| Mount { host: g.host, inside: g.inside, optional: false };
        SandboxSpec {
            read_only: system.chain(profile.read_grants().into_iter().map(grant)).collect(),
            read_write: profile.write_grants().into_iter().map(grant).collect(),
            // An allow-list gets no host network either: the launcher adds the egress bridge.
            host_network: profile.network_access() == NetworkAccess::All,
            allow_degraded,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            max_processes: DEFAULT_MAX_PROCESSES,
            max_address_space: None,
            max_memory: Some(DEFAULT_MAX_MEMORY),
            cwd: None,
            egress: None,
            inbound: None,
        }
    }

    /// The spec for a package or command RunConfig: the profile, plus read-only access to the program's install prefix and the `PATH`
    /// directories (so `#!/usr/bin/env node` finds node), plus read-write access to the package
    /// manager's cache for npx and uvx sources (they download the server there).
    /// Add the program itself with [`SandboxSpec::add_program`] once it is resolved.
    pub fn for_run_config(config: &RunConfig, path_var: Option<&std::ffi::OsStr>) -> Self {
        let mut spec = SandboxSpec::from_profile(&config.permission_profile, config.allow_degraded_isolation);
        if let Some(path) = path_var {
            for dir in std::env::split_paths(path) {
                if dir.is_absolute() {
                    spec.add_read_only(&dir, true);
                }
            }
        }
        if let Source::Package(p) = &config.source {
            let var = |k: &str| config.env.get(k).cloned().or_else(|| std::env::var(k).ok());
            for dir in package_caches(p.ecosystem, var) {
                // The cache must exist to be bound; creating an empty one is what the tool would do.
                let _ = std::fs::create_dir_all(&dir);
                spec.read_write.push(Mount { host: dir.clone(), inside: dir, optional: true });
            }
            // uv told to use a given interpreter (`UV_PYTHON=/opt/python3.12/bin/python3`) finds
            // it only if its installation is visible too.
            if let Some(python) = pinned_interpreter(p.ecosystem, var) {
                spec.add_program(&python);
            }
        }
        spec.cwd = std::env::current_dir().ok();
        spec
    }

    /// Makes `path` visible read-only at the same place.
    pub fn add_read_only(&mut self, path: &Path, optional: bool) {
        if !self.read_only.iter().any(|m| m.host == path) {
            self.read_only.push(Mount { host: path.to_path_buf(), inside: path.to_path_buf(), optional });
        }
    }

    /// Makes a program and its install prefix visible: for `/x/venv/bin/python` that is `/x/venv`
    /// (its libraries sit next to `bin`), and the same for the file a symlink chain ends at.
    pub fn add_program(&mut self, program: &Path) {
        let mut paths = vec![program.to_path_buf()];
        if let Ok(real) = std::fs::canonicalize(program)
            && real != program
        {
            paths.push(real);
        }
        for p in paths {
            if let Some(prefix) = install_prefix(&p) {
                self.add_read_only(&prefix, true);
            }
        }
    }
}

/// `/a/b/bin/prog` → `/a/b`; `/a/b/prog` → `/a/b`. Never `/` itself.
fn install_prefix(program: &Path) -> Option<PathBuf> {
    let dir = program.parent()?;
    let prefix = if dir.file_name().is_some_and(|n| n == "bin" || n == "sbin") { dir.parent()? } else { dir };
    (prefix != Path::new("/")).then(|| prefix.to_path_buf())
}

/// Where npm and uv keep what they download (they write there on every start).
fn package_caches(ecosystem: Ecosystem, var: impl Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let home = var("HOME").map(PathBuf::from);
    let from = |name: &str, fallback: Option<PathBuf>| var(name).map(PathBuf::from).or(fallback);
    let dirs = match ecosystem {
        Ecosystem::Npx => vec![from("npm_config_cache", home.as_ref().map(|h| h.join(".npm")))],
        Ecosystem::Uvx => vec![
            from("UV_CACHE_DIR", home.as_ref().map(|h| h.join(".cache/uv"))),
            from("UV_TOOL_DIR", home.as_ref().map(|h| h.join(".local/share/uv"))),
            from("UV_PYTHON_INSTALL_DIR", home.as_ref().map(|h| h.join(".local/share/uv/python"))),
        ],
    };
    dirs.into_iter().flatten().filter(|d| d.is_absolute()).collect()
}

/// The interpreter uvx is pinned to by `UV_PYTHON`, when that names a file by absolute path
/// (a version request such as `3.12` is uv's to resolve among the installs it manages).
fn pinned_interpreter(ecosystem: Ecosystem, var: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if ecosystem != Ecosystem::Uvx {
        return None;
    }
    let python = PathBuf::from(var("UV_PYTHON")?);
    (python.is_absolute() && python.is_file()).then_some(python)
}

/// One line for `apiary status`: what isolation a workload's server runs under.
pub fn describe(config: &RunConfig) -> String {
    if config.is_remote() || matches!(config.source, Source::Image(_)) {
        return "none (not a local process)".to_owned();
    }
    if config.isolation == apiary_config::Isolation::None {
        return "none (--isolation none)".to_owned();
    }
    let profile = config.permission_profile.name.as_deref().unwrap_or("custom");
    let network = match config.permission_profile.network_access() {
        NetworkAccess::All => "host network",
        NetworkAccess::None => "no network",
        NetworkAccess::AllowList => "outbound allow-list through the egress proxy",
    };
    let degraded = if config.allow_degraded_isolation { ", degraded allowed" } else { "" };
    format!("sandbox (profile {profile}: {network}{degraded})")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_an_absolute_uv_python_is_shared() {
        let sh = "/bin/sh".to_owned();
        assert_eq!(
            pinned_interpreter(Ecosystem::Uvx, |k| (k == "UV_PYTHON").then(|| sh.clone())),
            Some(sh.clone().into())
        );
        assert_eq!(pinned_interpreter(Ecosystem::Npx, |k| (k == "UV_PYTHON").then(|| sh.clone())), None);
        assert_eq!(pinned_interpreter(Ecosystem::Uvx, |k| (k == "UV_PYTHON").then(|| "3.12".to_owned())), None);
        assert_eq!(pinned_interpreter(Ecosystem::Uvx, |_| None), None);
    }

    #[test]
    fn prefix_of_a_bin_dir_is_its_parent() {
        assert_eq!(install_prefix(Path::new("/x/venv/bin/python")), Some(PathBuf::from("/x/venv")));
        assert_eq!(install_prefix(Path::new("/x/tool/server")), Some(PathBuf::from("/x/tool")));
        assert_eq!(install_prefix(Path::new("/bin/sh")), None);
    }

    #[test]
    fn none_profile_has_no_host_network_and_network_has_it() {
        assert!(!SandboxSpec::from_profile(&PermissionProfile::none(), false).host_network);
        assert!(SandboxSpec::from_profile(&PermissionProfile::network(), false).host_network);
    }

    #[test]
    fn an_allow_list_has_no_host_network_and_the_bridge_round_trips() {
        let json = r#"{"network": {"outbound": {"allow_host": ["a.test"], "allow_port": [443]}}}"#;
        let profile: PermissionProfile = serde_json::from_str(json).unwrap();
        let mut spec = SandboxSpec::from_profile(&profile, false);
        assert!(!spec.host_network);
        assert_eq!(spec.egress, None);
        // A spec written without the field (an older launcher) still reads.
        let text = serde_json::to_string(&spec).unwrap();
        assert!(!text.contains("egress"));
        assert_eq!(serde_json::from_str::<SandboxSpec>(&text).unwrap(), spec);
        spec.egress = Some(bridge::EgressBridge { socket: "/run/x.sock".into(), port: 3128 });
        let back: SandboxSpec = serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn npx_cache_follows_the_environment() {
        let dirs = package_caches(Ecosystem::Npx, |k| (k == "HOME").then(|| "/home/u".to_owned()));
        assert_eq!(dirs, vec![PathBuf::from("/home/u/.npm")]);
        let dirs = package_caches(Ecosystem::Uvx, |k| (k == "UV_CACHE_DIR").then(|| "/c".to_owned()));
        assert_eq!(dirs, vec![PathBuf::from("/c")]);
    }
}
