//! MCP clients Apiary keeps configured (`apiary client …`, ToolHive's `thv client`): which
//! clients exist and where their config lives ([`table`]), byte-preserving edits of one entry in
//! a client's JSON file ([`edit`]), YAML file ([`yaml`]) or TOML file ([`toml_file`]), and which
//! clients are registered, remembered in `clients.json` under the state directory (this module).

pub mod edit;
pub mod table;
pub mod toml_file;
pub mod yaml;

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use edit::{EditError, Outcome};
use table::{ClientSpec, FileFormat};

/// Writes workload `name` at `url` into the client's config at `path` (in the client's format
/// and entry shape), creating the file when missing; atomic, and nothing else in it changes.
pub fn upsert(spec: &ClientSpec, path: &Path, name: &str, url: &str) -> Result<Outcome, EditError> {
    let entry = spec.entry_value(name, url);
    match spec.format {
        FileFormat::Json => edit::upsert(path, spec.key, name, &spec.entry(url)),
        FileFormat::YamlMap | FileFormat::YamlList => edit_text(path, "YAML", |text| {
            yaml::upsert(text, yaml_layout(spec.format), spec.key, name, &entry).map_err(yaml_err)
        }),
        FileFormat::TomlTables | FileFormat::TomlArray => edit_text(path, "TOML", |text| {
            toml_file::upsert(text, toml_layout(spec.format), spec.key, name, &entry).map_err(toml_err)
        }),
    }
}

/// Takes workload `name` out of the client's config at `path`: with `url`, only an entry that
/// points at it (one of the same name written by the user for something else stays).
pub fn remove(spec: &ClientSpec, path: &Path, name: &str, url: Option<&str>) -> Result<Outcome, EditError> {
    match spec.format {
        FileFormat::Json => edit::remove(path, spec.key, name, url),
        FileFormat::YamlMap | FileFormat::YamlList => edit_text(path, "YAML", |text| {
            yaml::remove(text, yaml_layout(spec.format), spec.key, name, url).map_err(yaml_err)
        }),
        FileFormat::TomlTables | FileFormat::TomlArray => edit_text(path, "TOML", |text| {
            toml_file::remove(text, toml_layout(spec.format), spec.key, name, url).map_err(toml_err)
        }),
    }
}

fn yaml_layout(format: FileFormat) -> yaml::Layout {
    if format == FileFormat::YamlList { yaml::Layout::List } else { yaml::Layout::Map }
}

fn toml_layout(format: FileFormat) -> toml_file::Layout {
    if format == FileFormat::TomlArray { toml_file::Layout::Array } else { toml_file::Layout::Tables }
}

/// An edit's refusal: the file is not valid (`true`) or cannot be edited safely (`false`).
type Refusal = (bool, String);

fn yaml_err(e: yaml::YamlError) -> Refusal {
    match e {
        yaml::YamlError::Invalid(m) => (true, m),
        yaml::YamlError::Unsupported(m) => (false, m),
    }
}

fn toml_err(e: toml_file::TomlError) -> Refusal {
    match e {
        toml_file::TomlError::Invalid(m) => (true, m),
        toml_file::TomlError::Unsupported(m) => (false, m),
    }
}

/// Reads the text at `path` (empty when missing), lets `f` edit it, writes the result
/// atomically when it changed.
fn edit_text(
    path: &Path,
    format: &'static str,
    f: impl FnOnce(&str) -> Result<Option<String>, Refusal>,
) -> Result<Outcome, EditError> {
    let path = edit::target(path);
    let text = match edit::read_raw(&path)? {
        Some(bytes) => String::from_utf8(bytes).map_err(|_| EditError::Invalid {
            path: path.clone(),
            format,
            message: "not UTF-8".into(),
        })?,
        None => String::new(),
    };
    match f(&text) {
        Ok(Some(new)) => {
            edit::write_atomic(&path, new.as_bytes())?;
            Ok(Outcome::Changed)
        }
        Ok(None) => Ok(Outcome::Unchanged),
        Err((true, message)) => Err(EditError::Invalid { path, format, message }),
        Err((false, message)) => Err(EditError::Refused { path, message }),
    }
}

use serde::{Deserialize, Serialize};

use crate::state::{StateDir, StateError, write_atomic};

/// Largest `clients.json` read back.
const MAX_CLIENTS_BYTES: u64 = 256 * 1024;

/// One registered client and the groups whose workloads it gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Client id from [`table::CLIENTS`].
    pub client: String,
    /// Groups whose workloads are written into the client's config.
    pub groups: Vec<String>,
}

impl Registration {
    /// Whether workloads of `group` belong in this client's config.
    pub fn wants(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ClientsFile {
    #[serde(default)]
    clients: Vec<Registration>,
}

/// How long an edit waits for another apiary process editing client configs.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Held while client configs and `clients.json` are read and rewritten, so that two apiary
/// processes (two `run`s) do not lose each other's entries.
#[derive(Debug)]
pub struct ClientsLock {
    _file: std::fs::File,
}

impl StateDir {
    /// Takes the client-config lock, waiting up to 10 s for another process.
    pub fn lock_clients(&self) -> Result<ClientsLock, StateError> {
        use rustix::fs::{FlockOperation, flock};
        self.ensure()?;
        let path = self.root().join("clients.lock");
        let file = crate::state::open_lock_file(&path)?;
        let io_err = |source| StateError::Io { path: path.clone(), source };
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(ClientsLock { _file: file }),
                Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    return Err(io_err(io::Error::other("another apiary process holds it")));
                }
                Err(e) => return Err(io_err(e.into())),
            }
        }
    }

    fn clients_path(&self) -> PathBuf {
        self.root().join("clients.json")
    }

    /// Registered clients, in registration order.
    pub fn registered_clients(&self) -> Result<Vec<Registration>, StateError> {
        let path = self.clients_path();
        let io_err = |source| StateError::Io { path: path.clone(), source };
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(e)),
        };
        let mut text = Vec::new();
        file.take(MAX_CLIENTS_BYTES).read_to_end(&mut text).map_err(io_err)?;
        let parsed: ClientsFile = serde_json::from_slice(&text)
            .map_err(|e| StateError::Corrupt { path: path.clone(), message: e.to_string() })?;
        Ok(parsed.clients)
    }

    /// Registers `client` for `groups` (replacing an earlier registration of it).
    pub fn register_client(&self, client: &str, groups: &[String]) -> Result<(), StateError> {
        let mut all = self.registered_clients()?;
        let reg = Registration { client: client.to_owned(), groups: groups.to_vec() };
        match all.iter_mut().find(|r| r.client == client) {
            Some(r) => *r = reg,
            None => all.push(reg),
        }
        self.save_clients(all)
    }

    /// Forgets `client`; returns whether it was registered.
    pub fn unregister_client(&self, client: &str) -> Result<bool, StateError> {
        let mut all = self.registered_clients()?;
        let before = all.len();
        all.retain(|r| r.client != client);
        if all.len() == before {
            return Ok(false);
        }
        self.save_clients(all)?;
        Ok(true)
    }

    fn save_clients(&self, clients: Vec<Registration>) -> Result<(), StateError> {
        self.ensure()?;
        let path = self.clients_path();
        let mut bytes = serde_json::to_vec_pretty(&ClientsFile { clients })
            .map_err(|e| StateError::Io { path: path.clone(), source: io::Error::other(e) })?;
        bytes.push(b'\n');
        write_atomic(&path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn registrations_are_remembered_replaced_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path().join("state"));
        assert!(state.registered_clients().unwrap().is_empty());
        state.register_client("cursor", &["default".into()]).unwrap();
        state.register_client("vscode", &["team".into()]).unwrap();
        state.register_client("cursor", &["default".into(), "lab".into()]).unwrap();
        let all = state.registered_clients().unwrap();
        assert_eq!(all.iter().map(|r| r.client.as_str()).collect::<Vec<_>>(), ["cursor", "vscode"]);
        assert!(all[0].wants("lab") && !all[1].wants("default"));
        assert!(state.unregister_client("cursor").unwrap());
        assert!(!state.unregister_client("cursor").unwrap());
        assert_eq!(state.registered_clients().unwrap().len(), 1);
        let held = state.lock_clients().unwrap();
        drop(held);
        state.lock_clients().unwrap();
    }
}
