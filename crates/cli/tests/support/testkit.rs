//! Finds the fixture MCP server binary (`apiary-testkit-server`) for tests of a crate that cannot
//! name it with `env!("CARGO_BIN_EXE_…")` (that only works inside its own package).
//!
//! A workspace-wide `cargo test` builds it next to this test binary (`target/<profile>/`). When it
//! is missing there, it is built on demand into `target/testkit-build/`: a directory of its own,
//! because the running `cargo test` holds the lock of its own target directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

const BIN: &str = "apiary-testkit-server";

static BUILD: Mutex<()> = Mutex::new(());

/// The path of `apiary-testkit-server`, building it if needed.
pub fn testkit_server() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test>-<hash>
    let profile_dir = exe.parent().and_then(Path::parent).expect("test binary lives in target/<profile>/deps");
    let beside = profile_dir.join(BIN);
    if beside.is_file() {
        return beside;
    }
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let target_dir = profile_dir.parent().expect("target dir");
    let own_target = target_dir.join("testkit-build");
    let built = own_target.join(if release { "release" } else { "debug" }).join(BIN);
    let _guard = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--quiet", "-p", "apiary-testkit", "--bin", BIN])
        .env("CARGO_TARGET_DIR", &own_target);
    if release {
        cmd.arg("--release");
    }
    // Cargo itself rebuilds only what changed, so this is cheap once built.
    let status = cmd.status().expect("run cargo build for the testkit server");
    assert!(status.success(), "building {BIN} failed");
    assert!(built.is_file(), "{} missing after build", built.display());
    built
}
