//! The Python side: a venv on the machine's Python 3.11 holding PyPI `mcp`, the Python MCP
//! servers and `uv`, keyed by the hash of the pinned requirements; then uv's cache is warmed
//! so `uvx <server>` starts without the network.

use super::cache::{self, Cache};
use super::pins;
use crate::run_cmd;
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const VENV_LIMIT: Duration = Duration::from_secs(2 * 60);
const PIP_LIMIT: Duration = Duration::from_secs(15 * 60);
const UVX_LIMIT: Duration = Duration::from_secs(5 * 60);

/// The interpreter the venv is built on.
pub struct BasePython {
    /// Its real executable (not a pyenv shim), also handed to uv.
    pub exe: PathBuf,
    pub version: String,
}

/// An installed venv.
pub struct Venv {
    pub dir: PathBuf,
    pub base: BasePython,
}

impl Venv {
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }
}

/// Finds `python3.11` (else `python3` if it is 3.10 or newer, which `mcp` needs).
pub fn find_base() -> Result<BasePython> {
    let mut tried = Vec::new();
    for candidate in ["python3.11", "python3"] {
        let mut cmd = Command::new(candidate);
        cmd.args(["-c", "import sys; print(sys.executable); print('%d.%d.%d' % sys.version_info[:3])"]);
        let Ok(out) = run_cmd::capture(&mut cmd, Duration::from_secs(30)) else {
            tried.push(format!("{candidate}: not found"));
            continue;
        };
        let mut lines = out.stdout.lines();
        let (Some(exe), Some(version)) = (lines.next(), lines.next()) else {
            tried.push(format!("{candidate}: {}", out.stderr.trim()));
            continue;
        };
        let minor = version.split('.').nth(1).and_then(|m| m.parse::<u32>().ok());
        if out.status.success() && version.starts_with("3.") && minor.is_some_and(|m| m >= 10) {
            return Ok(BasePython { exe: PathBuf::from(exe), version: version.to_owned() });
        }
        tried.push(format!("{candidate}: Python {version}"));
    }
    bail!("no Python 3.10+ found (tried {}); install python3.11", tried.join("; "))
}

/// Creates the venv and installs the pinned requirements (if missing). Returns the venv and
/// whether it installed now.
pub fn ensure_venv(cache: &Cache, base: BasePython) -> Result<(Venv, bool)> {
    let exe = base.exe.to_string_lossy();
    let key = cache::stable_hash(&[pins::PY_REQUIREMENTS, &exe, &base.version]);
    let dir = cache.py_dir(&key);
    let venv_dir = dir.join("venv");
    let installed = cache::install_once(&dir, |dir| {
        eprintln!("test-env: creating Python {} venv with pinned requirements", base.version);
        let requirements = dir.join("requirements.txt");
        fs::write(&requirements, pins::PY_REQUIREMENTS)?;
        let mut venv = Command::new(&base.exe);
        venv.args(["-m", "venv"]).arg(dir.join("venv"));
        run_cmd::run_ok(&mut venv, VENV_LIMIT)?;
        let mut pip = Command::new(dir.join("venv").join("bin").join("python"));
        pip.args(["-m", "pip", "install", "--quiet", "--no-input", "--disable-pip-version-check", "-r"])
            .arg(&requirements);
        run_cmd::run_ok(&mut pip, PIP_LIMIT)
    })?;
    Ok((Venv { dir: venv_dir, base }, installed))
}

/// Environment every uv invocation gets (also written into the uv wrappers as defaults):
/// the cache's own uv cache, no Python downloads (nothing but registries is reachable), and
/// the base interpreter.
pub fn uv_env(cache: &Cache, venv: &Venv) -> Vec<(&'static str, String)> {
    let tools = cache.uv_tools();
    vec![
        ("UV_CACHE_DIR", cache.uv_cache().to_string_lossy().into_owned()),
        ("UV_PYTHON_DOWNLOADS", "never".to_owned()),
        ("UV_PYTHON", venv.base.exe.to_string_lossy().into_owned()),
        ("UV_TOOL_DIR", tools.join("envs").to_string_lossy().into_owned()),
        ("UV_TOOL_BIN_DIR", tools.join("bin").to_string_lossy().into_owned()),
    ]
}

/// Runs each pinned Python server once through `uvx` so uv's cache holds it; returns how
/// many it warmed now.
pub fn warm_uvx(cache: &Cache, venv: &Venv) -> Result<usize> {
    let mut warmed = 0;
    for (name, version) in pins::UVX_SERVERS {
        let key = format!("uv{}-py{}-{name}@{version}", pins::UV_VERSION, venv.base.version);
        let marker = cache.uv_warm_marker(&key);
        if marker.is_file() {
            continue;
        }
        eprintln!("test-env: warming uv's cache with {name}=={version}");
        let mut cmd = uvx(cache, venv);
        cmd.arg(format!("{name}=={version}")).arg("--help");
        let out = run_cmd::capture(&mut cmd, UVX_LIMIT)?;
        if !out.status.success() {
            bail!("`uvx {name}=={version} --help` failed ({}):\n{}", out.status, out.stderr);
        }
        if let Some(parent) = marker.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&marker, b"").with_context(|| format!("cannot write {}", marker.display()))?;
        warmed += 1;
    }
    Ok(warmed)
}

/// `uvx` from the venv with the cache's uv settings.
pub fn uvx(cache: &Cache, venv: &Venv) -> Command {
    let mut cmd = Command::new(venv.bin("uvx"));
    cmd.envs(uv_env(cache, venv));
    cmd
}
