//! Jaeger for the telemetry tests, built from source through the Go module proxy (no release
//! download): a throwaway module under `$APIARY_CACHE/jaeger/<version>/` records it as a tool
//! dependency (`go get -tool`), `go build` makes the binary, and the marker caches it by version.
//! `cmd/jaeger` at this tag is Jaeger's OpenTelemetry-collector based binary; tests run it
//! all-in-one with in-memory storage (`apiary_testkit::jaeger`).

use super::cache::{self, Cache};
use super::pins;
use crate::run_cmd;
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The module path of the binary.
const PACKAGE: &str = "github.com/jaegertracing/jaeger/cmd/jaeger";
/// Downloading the module graph (~300 modules) and compiling (~5 min on 2 cores).
const GET_LIMIT: Duration = Duration::from_secs(20 * 60);
const BUILD_LIMIT: Duration = Duration::from_secs(30 * 60);
const CHECK_LIMIT: Duration = Duration::from_secs(60);

/// Where the built binary is.
pub struct Jaeger {
    pub binary: PathBuf,
}

/// Builds Jaeger unless this version is already in the cache. Returns true if it built now.
pub fn ensure(cache: &Cache) -> Result<(Jaeger, bool)> {
    let version = pins::JAEGER_VERSION;
    let dir = cache.root().join("jaeger").join(version);
    let binary = dir.join("jaeger");
    let installed = cache::install_once(&dir, |dir| {
        eprintln!("test-env: building Jaeger {version} from the Go module proxy (a few minutes, once)");
        build(dir, version)
    })?;
    if !binary.is_file() {
        bail!("{} is missing; delete {} and rerun", binary.display(), dir.display());
    }
    Ok((Jaeger { binary }, installed))
}

fn build(dir: &Path, version: &str) -> Result<()> {
    fs::write(dir.join("go.mod"), "module apiary.local/jaeger-build\n\ngo 1.25\n")
        .with_context(|| format!("cannot write {}", dir.join("go.mod").display()))?;
    let go = |args: &[&str]| {
        let mut cmd = Command::new("go");
        cmd.args(args).current_dir(dir).env("GOFLAGS", "-mod=mod -buildvcs=false");
        cmd
    };
    run_cmd::run_ok(&mut go(&["get", "-tool", &format!("{PACKAGE}@v{version}")]), GET_LIMIT)
        .with_context(|| format!("go get -tool {PACKAGE}@v{version} (is the Go module proxy reachable?)"))?;
    run_cmd::run_ok(&mut go(&["build", "-trimpath", "-o", "jaeger", PACKAGE]), BUILD_LIMIT)
        .context("go build of Jaeger")?;
    Ok(())
}

/// Proves the binary runs.
pub fn check(jaeger: &Path) -> Result<String> {
    let out = run_cmd::capture(Command::new(jaeger).arg("version"), CHECK_LIMIT)?;
    if !out.status.success() {
        bail!("`jaeger version` failed ({}): {}", out.status, out.stderr.trim());
    }
    Ok(format!("Jaeger {} runs", pins::JAEGER_VERSION))
}
