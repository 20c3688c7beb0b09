//! Paths of the workspace's own binaries for tests in other packages (cargo only sets
//! `CARGO_BIN_EXE_*` for a package's own binaries). A binary is looked for next to the
//! running test's profile directory, where `cargo xtask test` builds every binary first;
//! failing that it is built once into a separate target directory, so the build never
//! waits on the lock of the `cargo test` that is running us.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The profile directory of the running test (`…/target/debug`).
fn profile_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().map(Path::to_path_buf)
    } else {
        Some(dir.to_path_buf())
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Finds (or builds) binary `bin` of package `package`.
///
/// # Panics
/// When the binary is missing and cannot be built.
pub fn binary(package: &str, bin: &str) -> PathBuf {
    if let Some(p) = profile_dir().map(|d| d.join(bin)).filter(|p| p.is_file()) {
        return p;
    }
    let cache = std::env::var_os(crate::env::CACHE_VAR)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/apiary")))
        .unwrap_or_else(std::env::temp_dir);
    let target = cache.join("test-bins");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(workspace_root())
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {bin}: {e}"));
    assert!(status.success(), "building {bin} failed; try `cargo build -p {package} --bin {bin}`");
    let p = target.join("debug").join(bin);
    assert!(p.is_file(), "{} missing after the build", p.display());
    p
}

/// The fixture MCP server binary, `apiary-testkit-server`.
pub fn testkit_server() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| binary("apiary-testkit", "apiary-testkit-server")).clone()
}

/// The `apiary` binary.
pub fn apiary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| binary("apiary", "apiary")).clone()
}
