//! A login's state as a file, so a proxy started later (detached, or after a restart) goes on
//! without a new login: the token endpoint, the client, and the tokens. The file holds a
//! refresh token: it is written 0600, atomically, and never logged.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Largest session file read.
const MAX_SESSION_BYTES: u64 = 64 * 1024;

/// What a login leaves behind. No `Debug`: it holds tokens.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteAuthSnapshot {
    /// The token endpoint the tokens came from.
    pub token_url: String,
    pub client_id: String,
    /// How the client authenticates: `none`, `client_secret_basic` or `client_secret_post`.
    pub client_auth: String,
    /// The secret of a dynamically registered client (a configured secret is never stored:
    /// it comes from the configuration again on resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_client_secret: Option<String>,
    /// RFC 8707 resource indicator sent with every grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    pub access_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// When the access token expires, in seconds since the Unix epoch.
    pub expires_at_unix: u64,
}

/// Why a session file cannot be read or written; never carries its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionFileError {
    #[error("no remote login session at {0}")]
    Missing(String),
    #[error("cannot read or write the remote login session {path}: {message}")]
    Io { path: String, message: String },
    #[error("the remote login session {0} is damaged; log in again")]
    Corrupt(String),
}

impl RemoteAuthSnapshot {
    /// Reads a session file written by [`RemoteAuthSnapshot::save`].
    pub fn load(path: &Path) -> Result<RemoteAuthSnapshot, SessionFileError> {
        let shown = path.display().to_string();
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(SessionFileError::Missing(shown)),
            Err(e) => return Err(SessionFileError::Io { path: shown, message: e.to_string() }),
        };
        let mut text = Vec::new();
        file.take(MAX_SESSION_BYTES)
            .read_to_end(&mut text)
            .map_err(|e| SessionFileError::Io { path: shown.clone(), message: e.to_string() })?;
        // The parser's message may quote the file: it is not passed on.
        serde_json::from_slice(&text).map_err(|_| SessionFileError::Corrupt(shown))
    }

    /// Writes the session to `path` atomically (a 0600 temporary file in the same directory,
    /// then a rename), creating the directory 0700 if needed.
    pub fn save(&self, path: &Path) -> Result<(), SessionFileError> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let shown = path.display().to_string();
        let io = |e: std::io::Error| SessionFileError::Io { path: shown.clone(), message: e.to_string() };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io)?;
        let text = serde_json::to_vec(self)
            .map_err(|e| SessionFileError::Io { path: shown.clone(), message: e.to_string() })?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut file =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io)?;
        let written = file.write_all(&text).and_then(|()| file.sync_all());
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        Ok(())
    }
}

/// Seconds since the Unix epoch at `at` (an `Instant` of this process).
pub(crate) fn unix_at(at: Instant) -> u64 {
    let now_unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let left = at.saturating_duration_since(Instant::now());
    (now_unix + left).as_secs()
}

/// The `Instant` of this process at `unix` seconds since the epoch (now, when that is past).
pub(crate) fn instant_at(unix: u64) -> Instant {
    let now_unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let left = Duration::from_secs(unix).saturating_sub(now_unix);
    Instant::now() + left.min(Duration::from_secs(366 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn snapshot() -> RemoteAuthSnapshot {
        RemoteAuthSnapshot {
            token_url: "https://as.example/token".into(),
            client_id: "c".into(),
            client_auth: "none".into(),
            registered_client_secret: None,
            resource: Some("https://remote.example/mcp".into()),
            access_token: "at".into(),
            refresh_token: Some("rt".into()),
            expires_at_unix: 1_900_000_000,
        }
    }

    #[test]
    fn a_saved_session_loads_back_and_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions").join("w.json");
        assert!(matches!(RemoteAuthSnapshot::load(&path), Err(SessionFileError::Missing(_))));
        snapshot().save(&path).unwrap();
        let back = RemoteAuthSnapshot::load(&path).unwrap();
        assert_eq!(back.refresh_token.as_deref(), Some("rt"));
        assert_eq!(back.resource.as_deref(), Some("https://remote.example/mcp"));
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        // Only the session itself is left in the directory.
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_damaged_session_is_refused_without_quoting_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.json");
        std::fs::write(&path, "{\"accessToken\": \"secret-at\"").unwrap();
        let err = RemoteAuthSnapshot::load(&path).err().unwrap();
        assert!(matches!(err, SessionFileError::Corrupt(_)));
        assert!(!err.to_string().contains("secret-at"));
    }

    #[test]
    fn expiry_survives_the_round_trip_through_wall_clock_time() {
        let at = Instant::now() + Duration::from_secs(600);
        let unix = unix_at(at);
        let back = instant_at(unix);
        let diff = if back > at { back - at } else { at - back };
        assert!(diff <= Duration::from_secs(2), "{diff:?}");
        // A past expiry is now, not a panic.
        assert!(instant_at(0) <= Instant::now());
    }
}
