//! Append-only log files with a size cap: past the cap the file is renamed to `<file>.1` (replacing
//! the previous one) and a new file is started, so a chatty server never fills the disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Default cap of one log file: 10 MiB (plus one rotated file of the same size).
pub const DEFAULT_LOG_CAP: u64 = 10 * 1024 * 1024;

/// A log file that rotates once it would grow past its cap. Shared between writers; every
/// [`LogFile::append`] lands as one write.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    cap: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    size: u64,
}

impl LogFile {
    /// Opens (creating, mode 0600) `path` for appending, rotating at `cap` bytes.
    pub fn open(path: impl Into<PathBuf>, cap: u64) -> io::Result<Self> {
        let path = path.into();
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(LogFile { path, cap: cap.max(1), inner: Mutex::new(Inner { file, size }) })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rotated file that holds older lines.
    pub fn rotated_path(&self) -> PathBuf {
        rotated_path(&self.path)
    }

    /// Appends `bytes`, rotating first if they would take the file past its cap.
    pub fn append(&self, bytes: &[u8]) -> io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let len = bytes.len() as u64;
        if inner.size > 0 && inner.size.saturating_add(len) > self.cap {
            std::fs::rename(&self.path, self.rotated_path())?;
            inner.file = open_append(&self.path)?;
            inner.size = 0;
        }
        inner.file.write_all(bytes)?;
        inner.size = inner.size.saturating_add(len);
        Ok(())
    }
}

/// `<path>.1`.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Opens a file for appending, created with mode 0600 (logs may echo secrets from the server).
pub fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_cap_and_keeps_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let log = LogFile::open(&path, 10).unwrap();
        log.append(b"123456\n").unwrap();
        log.append(b"abcdef\n").unwrap(); // would reach 14 > 10: rotates first
        assert_eq!(std::fs::read(&path).unwrap(), b"abcdef\n");
        assert_eq!(std::fs::read(log.rotated_path()).unwrap(), b"123456\n");
        log.append(b"ghijkl\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"ghijkl\n");
        assert_eq!(std::fs::read(log.rotated_path()).unwrap(), b"abcdef\n");
        // A single write larger than the cap still lands whole, in a file of its own.
        log.append(&[b'z'; 25]).unwrap();
        assert_eq!(std::fs::read(&path).unwrap().len(), 25);
    }

    #[test]
    fn reopening_continues_counting_from_the_existing_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.log");
        std::fs::write(&path, b"12345678").unwrap();
        let log = LogFile::open(&path, 10).unwrap();
        log.append(b"abc").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
        assert_eq!(std::fs::read(log.rotated_path()).unwrap(), b"12345678");
    }
}
