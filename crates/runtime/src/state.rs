//! Workload state on disk, under the XDG state directory (`$XDG_STATE_HOME/apiary`, else
//! `~/.local/state/apiary`; `APIARY_STATE_DIR` overrides both):
//!
//! ```text
//! runconfigs/<name>.json   the RunConfig the workload was started from
//! workloads/<name>.json    its status record (proxy pid, URL, state, restarts, last exit, children)
//! workloads/<name>.lock    held (flock) by the process serving the workload
//! logs/<name>.log          the server's stderr            (capped, one rotated `.1` kept)
//! logs/<name>.proxy.log    the proxy's own log            (capped, one rotated `.1` kept)
//! groups/<name>.json       a workload group (see `groups`; `default` has no file)
//! ```
//!
//! Every file is written to a temporary file in the same directory and renamed into place, so a
//! reader sees the old or the new content and never a part. Names are checked against the
//! RunConfig name rules before they become paths.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use apiary_config::{ConfigError, RunConfig};
use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};

use crate::clock::now_rfc3339;
use crate::log::rotated_path;
use crate::pid::ProcRef;

/// Overrides the state directory (tests, several installations side by side).
pub const STATE_DIR_VAR: &str = "APIARY_STATE_DIR";

/// Largest status record read back; anything bigger is not one of ours.
const MAX_RECORD_BYTES: u64 = 1024 * 1024;

/// Something went wrong with workload state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Neither `APIARY_STATE_DIR`, `XDG_STATE_HOME` nor `HOME` is set.
    #[error("cannot find a state directory: set APIARY_STATE_DIR, XDG_STATE_HOME or HOME")]
    NoStateDir,
    /// The name cannot be a workload name (and so never a file name).
    #[error(
        "{0:?} is not a workload name: use 1–63 characters from a-z, 0-9, '.', '_', '-', starting and ending with a letter or digit"
    )]
    InvalidName(String),
    /// No workload by that name exists.
    #[error("no workload named {0:?}")]
    NotFound(String),
    /// Another process serves this workload.
    #[error("workload {0:?} is already being served by another process")]
    Locked(String),
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A status record is not valid JSON of the expected shape.
    #[error("{}: not a workload status record: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// The RunConfig could not be read or written.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.to_path_buf(), source }
}

/// The lifecycle of a workload as recorded and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadState {
    /// The proxy process is starting (listener or first child not ready yet).
    Starting,
    /// Serving.
    Running,
    /// A child died and is being restarted.
    Restarting,
    /// The proxy runs but its server is down (crash loop, or it could not start).
    Unhealthy,
    /// Being stopped.
    Stopping,
    /// Not running.
    Stopped,
    /// The proxy failed, or died without cleaning up.
    Error,
}

impl WorkloadState {
    /// The word shown to people and written to files.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadState::Starting => "starting",
            WorkloadState::Running => "running",
            WorkloadState::Restarting => "restarting",
            WorkloadState::Unhealthy => "unhealthy",
            WorkloadState::Stopping => "stopping",
            WorkloadState::Stopped => "stopped",
            WorkloadState::Error => "error",
        }
    }

    /// True for states in which a proxy process should exist.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            WorkloadState::Starting
                | WorkloadState::Running
                | WorkloadState::Restarting
                | WorkloadState::Unhealthy
                | WorkloadState::Stopping
        )
    }
}

impl std::fmt::Display for WorkloadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status record of one workload (`workloads/<name>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRecord {
    /// Workload name.
    pub name: String,
    /// Its group.
    #[serde(default)]
    pub group: String,
    /// State as last written by the serving process.
    pub state: WorkloadState,
    /// The process serving the workload (the proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProcRef>,
    /// Address the proxy listens on (`127.0.0.1:8080`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_addr: Option<String>,
    /// The URL clients use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Server transport (`stdio`, `sse`, `streamable-http`).
    #[serde(default)]
    pub transport: String,
    /// What runs, for people (`npx://@scope/pkg`, `python3 server.py`, a URL).
    #[serde(default)]
    pub source: String,
    /// Child restarts since the proxy started.
    #[serde(default)]
    pub restarts: u32,
    /// Why a child last exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
    /// The restart waiting for its backoff, in state `restarting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_restart: Option<NextRestart>,
    /// Server processes now running.
    #[serde(default)]
    pub children: Vec<ProcRef>,
    /// When the proxy process started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When this record was written (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
    /// What went wrong, in state `error` or `unhealthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The StatefulSet the server runs as (`--runtime kubernetes`), kept after a stop so that
    /// `stop` can scale it down and `rm` delete it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubeWorkload>,
    /// The container engine the server's containers run in (an image on this machine), kept
    /// after a stop so that `stop` and `rm` can remove containers a killed proxy left behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerWorkload>,
}

/// A restart of the server waiting for its backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NextRestart {
    /// Failures within the restart window, this one included.
    pub attempt: u32,
    /// The backoff before it, in milliseconds.
    pub backoff_ms: u64,
    /// When it is due (RFC 3339).
    pub at: String,
}

/// Where a workload's containers run on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerWorkload {
    /// The engine's endpoint (`unix:///run/podman/podman.sock`).
    pub engine: String,
}

/// Where a workload's server runs in a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeWorkload {
    /// Namespace of the StatefulSet.
    pub namespace: String,
    /// Name of the StatefulSet (the workload's name).
    pub statefulset: String,
}

impl WorkloadRecord {
    /// A record for a workload that is not running.
    pub fn stopped(config: &RunConfig) -> Self {
        WorkloadRecord {
            name: config.name.clone(),
            group: config.group.clone(),
            state: WorkloadState::Stopped,
            proxy: None,
            listen_addr: None,
            url: None,
            transport: config.effective_transport().as_str().to_owned(),
            source: describe_source(config),
            restarts: 0,
            last_exit: None,
            next_restart: None,
            children: Vec::new(),
            started_at: None,
            updated_at: now_rfc3339(),
            error: None,
            kubernetes: None,
            container: None,
        }
    }

    /// Where the server runs: `kubernetes`, `container` or `process` (remote servers too: the
    /// proxy is the only local process).
    pub fn runtime(&self) -> &'static str {
        if self.kubernetes.is_some() {
            "kubernetes"
        } else if self.container.is_some() {
            "container"
        } else {
            "process"
        }
    }

    /// True when the record says a proxy should be running and that very process still runs.
    pub fn is_alive(&self) -> bool {
        self.state.is_active() && self.proxy.is_some_and(|p| p.is_alive())
    }

    /// The record as it should be shown: a record that claims an active state whose proxy process
    /// is gone is stale, and shows as `stopped` (it was stopping) or `error` (it died).
    pub fn observed(&self) -> WorkloadRecord {
        let mut rec = self.clone();
        if rec.state.is_active() && !rec.proxy.is_some_and(|p| p.is_alive()) {
            if rec.state == WorkloadState::Stopping {
                rec.state = WorkloadState::Stopped;
            } else {
                rec.state = WorkloadState::Error;
                let pid = rec.proxy.map(|p| p.pid.to_string()).unwrap_or_default();
                rec.error = Some(format!("the proxy process {pid} is gone without having stopped cleanly"));
            }
        }
        rec
    }

    /// Clears everything that only holds while running.
    pub fn mark_stopped(&mut self) {
        self.state = WorkloadState::Stopped;
        self.proxy = None;
        self.children.clear();
        self.next_restart = None;
        self.listen_addr = None;
        self.updated_at = now_rfc3339();
    }
}

/// A short description of what a RunConfig runs, for listings.
pub fn describe_source(config: &RunConfig) -> String {
    use apiary_config::Source;
    match &config.source {
        Source::Package(p) => format!("{}://{}", p.ecosystem.as_str(), p.name),
        Source::Command(c) => {
            let mut s = c.program.clone();
            for a in c.args.iter().chain(config.args.iter()) {
                s.push(' ');
                s.push_str(a);
            }
            s
        }
        Source::Image(i) => i.reference.clone(),
        Source::Remote(r) => r.url.clone(),
    }
}

/// The state directory and the paths in it.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// `APIARY_STATE_DIR`, else `$XDG_STATE_HOME/apiary`, else `$HOME/.local/state/apiary`.
    pub fn from_env() -> Result<Self, StateError> {
        Self::locate(|k| std::env::var_os(k))
    }

    /// Like [`StateDir::from_env`] with a custom variable lookup. Empty or relative values are
    /// ignored, as the XDG specification asks.
    pub fn locate(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Self, StateError> {
        let abs = |k: &str| var(k).map(PathBuf::from).filter(|p| p.is_absolute());
        let root = abs(STATE_DIR_VAR)
            .or_else(|| abs("XDG_STATE_HOME").map(|p| p.join("apiary")))
            .or_else(|| abs("HOME").map(|p| p.join(".local").join("state").join("apiary")))
            .ok_or(StateError::NoStateDir)?;
        Ok(StateDir { root })
    }

    /// A state directory at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the directory tree (mode 0700: RunConfigs may hold secrets).
    pub fn ensure(&self) -> Result<(), StateError> {
        use std::os::unix::fs::DirBuilderExt;
        for dir in [self.root.clone(), self.runconfigs_dir(), self.workloads_dir(), self.logs_dir()] {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io_err(&dir))?;
        }
        Ok(())
    }

    fn runconfigs_dir(&self) -> PathBuf {
        self.root.join("runconfigs")
    }

    fn workloads_dir(&self) -> PathBuf {
        self.root.join("workloads")
    }

    fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// `runconfigs/<name>.json`.
    pub fn runconfig_path(&self, name: &str) -> Result<PathBuf, StateError> {
        Ok(self.runconfigs_dir().join(format!("{}.json", checked(name)?)))
    }

    /// `workloads/<name>.json`.
    pub fn record_path(&self, name: &str) -> Result<PathBuf, StateError> {
        Ok(self.workloads_dir().join(format!("{}.json", checked(name)?)))
    }

    /// `workloads/<name>.lock`.
    pub fn lock_path(&self, name: &str) -> Result<PathBuf, StateError> {
        Ok(self.workloads_dir().join(format!("{}.lock", checked(name)?)))
    }

    /// `workloads/<name>.sock`: the Unix socket through which the proxy reaches an HTTP server
    /// listening inside a private network namespace (see [`crate::inbound`]).
    pub fn upstream_socket_path(&self, name: &str) -> Result<PathBuf, StateError> {
        Ok(self.workloads_dir().join(format!("{}.sock", checked(name)?)))
    }

    /// `logs/<name>.log`: the server's stderr.
    pub fn log_path(&self, name: &str) -> Result<PathBuf, StateError> {
        Ok(self.logs_dir().join(format!("{}.log", checked(name)?)))
    }

    /// `logs/<name>.proxy.log`: the proxy's own log.
    pub fn proxy_log_path(&self, name: &str) -> Result<PathBuf, StateError> {
        Ok(self.logs_dir().join(format!("{}.proxy.log", checked(name)?)))
    }

    /// Saves the RunConfig atomically.
    pub fn save_config(&self, config: &RunConfig) -> Result<(), StateError> {
        self.ensure()?;
        config.write_atomic(self.runconfig_path(&config.name)?)?;
        Ok(())
    }

    /// True when a RunConfig is saved under this name.
    pub fn has_config(&self, name: &str) -> Result<bool, StateError> {
        Ok(self.runconfig_path(name)?.is_file())
    }

    /// Loads the saved RunConfig.
    pub fn load_config(&self, name: &str) -> Result<RunConfig, StateError> {
        let path = self.runconfig_path(name)?;
        if !path.is_file() {
            return Err(StateError::NotFound(name.to_owned()));
        }
        Ok(RunConfig::from_path(&path)?)
    }

    /// Writes the status record atomically (stamping `updatedAt`).
    pub fn save_record(&self, record: &WorkloadRecord) -> Result<(), StateError> {
        self.ensure()?;
        let path = self.record_path(&record.name)?;
        let mut record = record.clone();
        record.updated_at = now_rfc3339();
        let mut text = serde_json::to_vec_pretty(&record)
            .map_err(|e| StateError::Corrupt { path: path.clone(), message: e.to_string() })?;
        text.push(b'\n');
        write_atomic(&path, &text)
    }

    /// The status record, if one was written.
    pub fn load_record(&self, name: &str) -> Result<Option<WorkloadRecord>, StateError> {
        use std::io::Read;
        let path = self.record_path(name)?;
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut text = Vec::new();
        file.take(MAX_RECORD_BYTES).read_to_end(&mut text).map_err(io_err(&path))?;
        serde_json::from_slice(&text).map(Some).map_err(|e| StateError::Corrupt { path, message: e.to_string() })
    }

    /// The record to show for `name`: the saved one seen through [`WorkloadRecord::observed`], or
    /// a `stopped` record made from the RunConfig when none was written yet.
    pub fn observed_record(&self, name: &str) -> Result<WorkloadRecord, StateError> {
        match self.load_record(name)? {
            Some(rec) => Ok(rec.observed()),
            None => {
                let config = self.load_config(name)?;
                Ok(WorkloadRecord::stopped(&config))
            }
        }
    }

    /// Every workload name with a RunConfig or a status record, sorted.
    pub fn names(&self) -> Result<Vec<String>, StateError> {
        let mut names = std::collections::BTreeSet::new();
        for dir in [self.runconfigs_dir(), self.workloads_dir()] {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&dir)(e)),
            };
            for entry in entries {
                let entry = entry.map_err(io_err(&dir))?;
                let file = entry.file_name();
                let Some(file) = file.to_str() else { continue };
                if let Some(name) = file.strip_suffix(".json")
                    && is_valid_name(name)
                {
                    names.insert(name.to_owned());
                }
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Deletes every file of the workload (RunConfig, record, lock, logs and rotated logs).
    /// Missing files are fine.
    pub fn remove(&self, name: &str) -> Result<(), StateError> {
        let log = self.log_path(name)?;
        let proxy_log = self.proxy_log_path(name)?;
        let paths = [
            self.runconfig_path(name)?,
            self.record_path(name)?,
            self.lock_path(name)?,
            self.upstream_socket_path(name)?,
            rotated_path(&log),
            rotated_path(&proxy_log),
            log,
            proxy_log,
        ];
        for path in paths {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        Ok(())
    }

    /// Deletes the log files (server, proxy, and their rotated files) of workloads that no
    /// longer exist: those with neither a RunConfig nor a status record. Returns the files
    /// removed, sorted. Files whose names are not a workload's log are left alone.
    pub fn prune_logs(&self) -> Result<Vec<PathBuf>, StateError> {
        let dir = self.logs_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let live: std::collections::BTreeSet<String> = self.names()?.into_iter().collect();
        let mut removed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let file = entry.file_name();
            let owners = file.to_str().map(log_owners).unwrap_or_default();
            if owners.is_empty() || owners.iter().any(|o| live.contains(*o)) {
                continue;
            }
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        removed.sort();
        Ok(removed)
    }

    /// Takes the workload's lock, held until the returned guard is dropped (or the process
    /// ends, however it ends). Fails with [`StateError::Locked`] when another process holds it.
    pub fn lock(&self, name: &str) -> Result<WorkloadLock, StateError> {
        self.ensure()?;
        let path = self.lock_path(name)?;
        let file = open_lock_file(&path)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(WorkloadLock { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(StateError::Locked(name.to_owned())),
            Err(e) => Err(io_err(&path)(e.into())),
        }
    }

    /// True when some process holds the workload's lock right now.
    pub fn is_locked(&self, name: &str) -> Result<bool, StateError> {
        let path = self.lock_path(name)?;
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(&path)(e)),
        };
        match flock(&file, FlockOperation::NonBlockingLockShared) {
            Ok(()) => Ok(false),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(true),
            Err(e) => Err(io_err(&path)(e.into())),
        }
    }
}

/// Holds a workload's lock while alive.
#[derive(Debug)]
pub struct WorkloadLock {
    _file: File,
}

/// True for names that follow the RunConfig name rules (and so are safe file names).
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().copied().is_some_and(edge)
        && bytes.last().copied().is_some_and(edge)
        && bytes.iter().all(|&b| edge(b) || matches!(b, b'.' | b'_' | b'-'))
}

fn checked(name: &str) -> Result<&str, StateError> {
    if is_valid_name(name) { Ok(name) } else { Err(StateError::InvalidName(name.to_owned())) }
}

/// Writes `bytes` to `path` through a temporary file in the same directory (mode 0600), flushed to
/// disk before the rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new().prefix(".state-").suffix(".tmp").tempfile_in(dir).map_err(io_err(path))?;
    tmp.write_all(bytes).map_err(io_err(path))?;
    tmp.as_file().sync_all().map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| io_err(path)(e.error))?;
    Ok(())
}

/// Opens (creating, mode 0600) the file a lock is taken on; its content is never used.
pub(crate) fn open_lock_file(path: &Path) -> Result<std::fs::File, StateError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(path).map_err(io_err(path))
}

/// The workloads whose log `file` may be (`<name>.log`, `<name>.proxy.log`, each maybe with
/// the rotation suffix `.1`): `x.proxy.log` is the proxy log of `x` or the server log of
/// `x.proxy`, so both are named. Empty when it is no workload's log.
fn log_owners(file: &str) -> Vec<&str> {
    let file = file.strip_suffix(".1").unwrap_or(file);
    [file.strip_suffix(".proxy.log"), file.strip_suffix(".log")]
        .into_iter()
        .flatten()
        .filter(|n| is_valid_name(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use apiary_config::Source;

    #[test]
    fn locates_the_directory_by_precedence() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| std::ffi::OsString::from(v))
        };
        let root = |pairs| StateDir::locate(env(pairs)).map(|s| s.root().to_path_buf());
        assert_eq!(
            root(&[("APIARY_STATE_DIR", "/a"), ("XDG_STATE_HOME", "/x"), ("HOME", "/h")]).unwrap(),
            PathBuf::from("/a")
        );
        assert_eq!(root(&[("XDG_STATE_HOME", "/x"), ("HOME", "/h")]).unwrap(), PathBuf::from("/x/apiary"));
        assert_eq!(
            root(&[("XDG_STATE_HOME", "relative"), ("HOME", "/h")]).unwrap(),
            PathBuf::from("/h/.local/state/apiary")
        );
        assert!(matches!(root(&[]), Err(StateError::NoStateDir)));
    }

    #[test]
    fn log_files_name_their_workloads() {
        assert_eq!(log_owners("fetch.log"), ["fetch"]);
        assert_eq!(log_owners("fetch.proxy.log"), ["fetch", "fetch.proxy"]);
        assert_eq!(log_owners("fetch.log.1"), ["fetch"]);
        assert_eq!(log_owners("fetch.proxy.log.1"), ["fetch", "fetch.proxy"]);
        assert_eq!(log_owners("my.server.log"), ["my.server"]);
        assert!(log_owners("notes.txt").is_empty());
        assert!(log_owners(".log").is_empty());
    }

    #[test]
    fn names_never_escape_the_directory() {
        let s = StateDir::at("/tmp/x");
        for bad in ["../etc", "a/b", "", "A", "-a", "a-", &"a".repeat(64)] {
            assert!(matches!(s.record_path(bad), Err(StateError::InvalidName(_))), "{bad:?}");
        }
        assert!(s.record_path("fetch.v2_x-1").is_ok());
    }

    #[test]
    fn records_round_trip_and_stale_ones_show_as_error_or_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path().join("state"));
        let config = RunConfig::builder("t", Source::command("sleep", ["10"])).build().unwrap();
        state.save_config(&config).unwrap();
        assert_eq!(state.names().unwrap(), vec!["t".to_owned()]);
        assert_eq!(state.load_config("t").unwrap(), config);
        // No record yet: shown as stopped.
        assert_eq!(state.observed_record("t").unwrap().state, WorkloadState::Stopped);

        let mut rec = WorkloadRecord::stopped(&config);
        rec.state = WorkloadState::Running;
        rec.proxy = Some(ProcRef::capture(std::process::id()));
        state.save_record(&rec).unwrap();
        let back = state.load_record("t").unwrap().unwrap();
        assert_eq!(back.proxy, rec.proxy);
        assert!(back.is_alive());
        assert_eq!(back.observed().state, WorkloadState::Running);

        // A pid that is not the recorded process any more.
        rec.proxy = rec.proxy.map(|p| ProcRef { start_ticks: p.start_ticks.map(|t| t + 1), ..p });
        state.save_record(&rec).unwrap();
        let seen = state.observed_record("t").unwrap();
        assert_eq!(seen.state, WorkloadState::Error);
        assert!(seen.error.unwrap().contains("gone"));
        rec.state = WorkloadState::Stopping;
        state.save_record(&rec).unwrap();
        assert_eq!(state.observed_record("t").unwrap().state, WorkloadState::Stopped);

        std::fs::write(state.log_path("t").unwrap(), "x").unwrap();
        state.remove("t").unwrap();
        assert!(state.names().unwrap().is_empty());
        assert!(!state.log_path("t").unwrap().exists());
        assert!(matches!(state.observed_record("t"), Err(StateError::NotFound(_))));
    }

    #[test]
    fn a_corrupt_record_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path());
        state.ensure().unwrap();
        std::fs::write(state.record_path("t").unwrap(), "{not json").unwrap();
        let err = state.load_record("t").unwrap_err().to_string();
        assert!(err.contains("workloads/t.json"), "{err}");
    }

    #[test]
    fn the_lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path());
        assert!(!state.is_locked("t").unwrap());
        let guard = state.lock("t").unwrap();
        assert!(state.is_locked("t").unwrap());
        assert!(matches!(state.lock("t"), Err(StateError::Locked(_))));
        drop(guard);
        assert!(!state.is_locked("t").unwrap());
        let _again = state.lock("t").unwrap();
    }
}
