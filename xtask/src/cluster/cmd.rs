//! Small helpers to run external tools and turn their failures into errors that say what
//! failed, with the tail of the tool's own output.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};

use super::layout::Layout;

/// How many bytes of a failing tool's output go into the error message.
const TAIL: usize = 2000;

/// A command that runs inside the node network namespace (`nsenter --net`, never
/// `ip netns exec`: that remounts /sys and hides the cgroup mounts from the kubelet).
pub fn in_ns(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", Layout::netns_path().display())).arg("--").arg(program);
    c
}

/// Describes a command for error messages: program and arguments, shortened.
pub fn describe(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    if s.len() > 300 {
        let mut cut = 300;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn tail(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    if s.len() <= TAIL {
        return s.to_string();
    }
    let mut start = s.len() - TAIL;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

/// Runs `c` to completion, capturing its output; fails with `what` and the output tail.
pub fn output(c: &mut Command, what: &str) -> Result<Output> {
    let out = c.stdin(Stdio::null()).output().with_context(|| format!("{what}: could not start `{}`", describe(c)))?;
    if !out.status.success() {
        bail!("{what}: `{}` failed ({})\n{}\n{}", describe(c), out.status, tail(&out.stderr), tail(&out.stdout));
    }
    Ok(out)
}

/// Runs `c` and returns its stdout as text.
pub fn stdout(c: &mut Command, what: &str) -> Result<String> {
    let out = output(c, what)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `c` and only reports success or failure.
pub fn run(c: &mut Command, what: &str) -> Result<()> {
    output(c, what).map(|_| ())
}

/// Runs `c` with its output going to our stderr (for long steps like `go build`, so the
/// user sees progress, while stdout stays reserved for the result, e.g. the kubeconfig
/// path); fails with `what`.
pub fn run_visible(c: &mut Command, what: &str) -> Result<()> {
    let status = c
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("{what}: could not start `{}`", describe(c)))?;
    if !status.success() {
        bail!("{what}: `{}` failed ({status})", describe(c));
    }
    Ok(())
}

/// True if `c` exits with success; output discarded. For probes, not for steps.
pub fn succeeds(c: &mut Command) -> bool {
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Writes `contents` to `path`, saying which file could not be written.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("write {}", path.display()))
}

/// Creates `path` and its parents.
pub fn mkdir(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    std::fs::create_dir_all(path).with_context(|| format!("create {}", path.display()))
}

/// Removes `path` (file or tree) if it exists.
pub fn remove(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("inspect {}", path.display())),
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).with_context(|| format!("remove {}", path.display())),
        Ok(_) => std::fs::remove_file(path).with_context(|| format!("remove {}", path.display())),
    }
}
