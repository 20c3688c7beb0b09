//! The tool cache outside the repository (`${APIARY_CACHE:-$HOME/.cache/apiary}`): where each
//! thing goes, the "installed completely" markers that make warm runs cheap, the lock that
//! keeps two concurrent `test-env` runs from installing into the same directory, and file
//! writes that readers never see half-done.

use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

/// Written last into a directory once what it holds is installed completely.
const MARKER: &str = ".apiary-complete";

/// How long a run waits for another run holding the lock before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(30 * 60);

/// The cache root and the layout below it.
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// `APIARY_CACHE` if set, else `$HOME/.cache/apiary`.
    pub fn from_env() -> Result<Self> {
        let root = match std::env::var_os("APIARY_CACHE").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => {
                let home = std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .context("neither APIARY_CACHE nor HOME is set")?;
                PathBuf::from(home).join(".cache").join("apiary")
            }
        };
        if !root.is_absolute() {
            bail!("APIARY_CACHE must be an absolute path, got {}", root.display());
        }
        fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Executables, symlinks and wrappers the tests run; what `APIARY_TOOLS_BIN` points at.
    pub fn bin(&self) -> PathBuf {
        self.root.join("bin")
    }

    /// The npm prefix of one package version (scoped names nest: `npm/@scope/name@1.2.3`).
    pub fn npm_prefix(&self, name: &str, version: &str) -> PathBuf {
        self.root.join("npm").join(format!("{name}@{version}"))
    }

    /// The Python environment for one requirements hash.
    pub fn py_dir(&self, key: &str) -> PathBuf {
        self.root.join("py").join(key)
    }

    /// uv's own cache, shared by the `uv`/`uvx` wrappers so warmed packages work offline.
    pub fn uv_cache(&self) -> PathBuf {
        self.root.join("uv").join("cache")
    }

    /// Where `uv tool install` puts environments and commands, kept inside the cache.
    pub fn uv_tools(&self) -> PathBuf {
        self.root.join("uv").join("tools")
    }

    /// Markers for what has been warmed into uv's cache.
    pub fn uv_warm_marker(&self, key: &str) -> PathBuf {
        self.root.join("uv").join("warm").join(key)
    }

    /// The lock file held for the duration of one `test-env` run.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join(".test-env.lock")
    }
}

/// True if `dir` was installed completely.
pub fn is_complete(dir: &Path) -> bool {
    dir.join(MARKER).is_file()
}

/// Installs into `dir` with `install` unless it is already complete. A directory left
/// without its marker (an interrupted install) is removed and installed again. Returns true
/// if it installed now.
pub fn install_once(dir: &Path, install: impl FnOnce(&Path) -> Result<()>) -> Result<bool> {
    if is_complete(dir) {
        return Ok(false);
    }
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("cannot remove unfinished install {}", dir.display()))?;
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    install(dir).with_context(|| format!("installing into {}", dir.display()))?;
    fs::write(dir.join(MARKER), b"").with_context(|| format!("cannot mark {} complete", dir.display()))?;
    Ok(true)
}

/// Writes `contents` to `path` (mode `mode`) unless it already holds exactly that; replaces
/// by rename so a test running the file never sees it half-written.
pub fn write_if_changed(path: &Path, contents: &str, mode: u32) -> Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let same = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
        && fs::read(path).is_ok_and(|old| old == contents.as_bytes())
        && fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o777 == mode);
    if same {
        return Ok(false);
    }
    let tmp = temp_sibling(path);
    fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(true)
}

/// Points the symlink `link` at `target` unless it already does; replaces by rename.
pub fn symlink_if_changed(target: &Path, link: &Path) -> Result<bool> {
    if fs::read_link(link).is_ok_and(|old| old == target) {
        return Ok(false);
    }
    let tmp = temp_sibling(link);
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).with_context(|| format!("cannot create symlink {}", tmp.display()))?;
    fs::rename(&tmp, link).with_context(|| format!("cannot replace {}", link.display()))?;
    Ok(true)
}

fn temp_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    path.with_file_name(name)
}

/// FNV-1a, 64 bit: a stable content hash for cache keys (std's hasher may change between
/// Rust releases, which would silently invalidate caches).
pub fn stable_hash(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0u8]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// A lock held by one `test-env` run: a file holding the owner's pid, taken over when that
/// process no longer exists.
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    pub fn acquire(path: &Path) -> Result<Self> {
        let started = Instant::now();
        let mut told = false;
        loop {
            match fs::OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut file) => {
                    use std::io::Write;
                    write!(file, "{}", std::process::id())
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    return Ok(Self { path: path.to_owned() });
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = fs::read_to_string(path).unwrap_or_default();
                    let alive =
                        owner.trim().parse::<u32>().is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                    if !alive {
                        // The owner died (or had not yet written its pid: then it is at most
                        // a moment old, and the create_new race decides).
                        let _ = fs::remove_file(path);
                        thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    if started.elapsed() > LOCK_WAIT {
                        bail!(
                            "another `cargo xtask test-env` (pid {}) held {} for {}s",
                            owner.trim(),
                            path.display(),
                            LOCK_WAIT.as_secs()
                        );
                    }
                    if !told {
                        eprintln!("test-env: waiting for another run (pid {}) to finish installing", owner.trim());
                        told = true;
                    }
                    thread::sleep(Duration::from_millis(250));
                }
                Err(err) => {
                    return Err(err).with_context(|| format!("cannot create {}", path.display()));
                }
            }
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-cache-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn hash_is_stable_and_separates_parts() {
        assert_eq!(stable_hash(&["a"]), "089be207b544f1e4");
        assert_ne!(stable_hash(&["ab", "c"]), stable_hash(&["a", "bc"]));
    }

    #[test]
    fn install_once_redoes_an_interrupted_install() {
        let root = scratch("once");
        let dir = root.join("pkg@1");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("half"), "x").unwrap();
        let installed = install_once(&dir, |d| Ok(fs::write(d.join("whole"), "y")?)).unwrap();
        assert!(installed);
        assert!(!dir.join("half").exists());
        assert!(dir.join("whole").exists());
        let again = install_once(&dir, |_| bail!("must not run")).unwrap();
        assert!(!again);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn failed_install_is_not_marked() {
        let root = scratch("fail");
        let dir = root.join("pkg@1");
        assert!(install_once(&dir, |_| bail!("boom")).is_err());
        assert!(!is_complete(&dir));
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn writes_only_on_change() {
        let root = scratch("write");
        let file = root.join("tool");
        assert!(write_if_changed(&file, "#!/bin/sh\n", 0o755).unwrap());
        assert!(!write_if_changed(&file, "#!/bin/sh\n", 0o755).unwrap());
        assert!(write_if_changed(&file, "#!/bin/sh\n", 0o644).unwrap());
        let link = root.join("node");
        assert!(symlink_if_changed(Path::new("/bin/true"), &link).unwrap());
        assert!(!symlink_if_changed(Path::new("/bin/true"), &link).unwrap());
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn stale_lock_is_taken_over() {
        let root = scratch("lock");
        let path = root.join("lock");
        // No process has pid 0 in /proc, so this lock's owner is gone.
        fs::write(&path, "0").unwrap();
        let lock = RunLock::acquire(&path).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), std::process::id().to_string());
        drop(lock);
        assert!(!path.exists());
        fs::remove_dir_all(root).unwrap();
    }
}
