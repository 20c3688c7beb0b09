//! Workload groups on disk: `groups/<name>.json` under the state directory, one file per group.
//! A workload names its group in its RunConfig (`group`); a group file only says the group exists.
//! The group `default` always exists and has no file; it cannot be created or removed.

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::clock::now_rfc3339;
use crate::state::{StateDir, StateError, is_valid_name};

/// The group a workload joins when none is given.
pub const DEFAULT_GROUP: &str = "default";

/// Largest group file read back; anything bigger is not one of ours.
const MAX_GROUP_BYTES: u64 = 64 * 1024;

/// Something went wrong with a group.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The name does not follow the RunConfig name rules.
    #[error(
        "{0:?} is not a group name: use 1–63 characters from a-z, 0-9, '.', '_', '-', starting and ending with a letter or digit"
    )]
    InvalidName(String),
    /// `group create` of a group that is there already.
    #[error("group {0:?} already exists")]
    AlreadyExists(String),
    /// No group by that name exists.
    #[error("group {0:?} does not exist; create it with: apiary group create {0}")]
    NotFound(String),
    /// `default` cannot be created or removed.
    #[error("the group \"default\" always exists and cannot be created or removed")]
    Default,
    /// Reading or writing state failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// What a group file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// The group's name.
    pub name: String,
    /// When it was created (RFC 3339); empty for `default`.
    #[serde(default)]
    pub created_at: String,
}

fn checked(name: &str) -> Result<&str, GroupError> {
    if is_valid_name(name) { Ok(name) } else { Err(GroupError::InvalidName(name.to_owned())) }
}

fn io_err(path: &std::path::Path) -> impl FnOnce(io::Error) -> GroupError + '_ {
    move |source| GroupError::State(StateError::Io { path: path.to_path_buf(), source })
}

impl StateDir {
    fn groups_dir(&self) -> PathBuf {
        self.root().join("groups")
    }

    /// `groups/<name>.json`.
    pub fn group_path(&self, name: &str) -> Result<PathBuf, GroupError> {
        Ok(self.groups_dir().join(format!("{}.json", checked(name)?)))
    }

    /// Creates the group; fails when it exists (checked and created in one step, so two
    /// concurrent creates cannot both succeed).
    pub fn create_group(&self, name: &str) -> Result<Group, GroupError> {
        use std::os::unix::fs::DirBuilderExt;
        let path = self.group_path(name)?;
        if name == DEFAULT_GROUP {
            return Err(GroupError::Default);
        }
        self.ensure()?;
        let dir = self.groups_dir();
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io_err(&dir))?;
        let group = Group { name: name.to_owned(), created_at: now_rfc3339() };
        let mut bytes = serde_json::to_vec_pretty(&group).map_err(|e| io_err(&path)(io::Error::other(e)))?;
        bytes.push(b'\n');
        let mut tmp =
            tempfile::Builder::new().prefix(".group-").suffix(".tmp").tempfile_in(&dir).map_err(io_err(&path))?;
        io::Write::write_all(&mut tmp, &bytes).map_err(io_err(&path))?;
        tmp.as_file().sync_all().map_err(io_err(&path))?;
        match tmp.persist_noclobber(&path) {
            Ok(_) => Ok(group),
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Err(GroupError::AlreadyExists(name.to_owned())),
            Err(e) => Err(io_err(&path)(e.error)),
        }
    }

    /// True for `default` and for every created group.
    pub fn group_exists(&self, name: &str) -> Result<bool, GroupError> {
        let path = self.group_path(name)?;
        Ok(name == DEFAULT_GROUP || path.is_file())
    }

    /// The group, or [`GroupError::NotFound`].
    pub fn load_group(&self, name: &str) -> Result<Group, GroupError> {
        use std::io::Read;
        let path = self.group_path(name)?;
        if name == DEFAULT_GROUP {
            return Ok(Group { name: name.to_owned(), created_at: String::new() });
        }
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(GroupError::NotFound(name.to_owned())),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut text = Vec::new();
        file.take(MAX_GROUP_BYTES).read_to_end(&mut text).map_err(io_err(&path))?;
        serde_json::from_slice(&text)
            .map_err(|e| GroupError::State(StateError::Corrupt { path, message: e.to_string() }))
    }

    /// Every group, `default` first, then the created ones sorted by name.
    pub fn groups(&self) -> Result<Vec<Group>, GroupError> {
        let mut names = std::collections::BTreeSet::new();
        let dir = self.groups_dir();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(io_err(&dir))?;
                    let file = entry.file_name();
                    if let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".json"))
                        && is_valid_name(name)
                        && name != DEFAULT_GROUP
                    {
                        names.insert(name.to_owned());
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&dir)(e)),
        }
        let mut out = vec![self.load_group(DEFAULT_GROUP)?];
        for name in names {
            match self.load_group(&name) {
                Ok(g) => out.push(g),
                // Removed between the listing and the read.
                Err(GroupError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Names of the workloads whose RunConfig (or record) puts them in `group`, sorted.
    pub fn workloads_in_group(&self, group: &str) -> Result<Vec<String>, StateError> {
        let mut out = Vec::new();
        for name in self.names()? {
            match self.observed_record(&name) {
                Ok(rec) if rec.group == group => out.push(name),
                Ok(_) | Err(StateError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Deletes the group's file. `default` cannot be removed; the caller decides what happens to
    /// the group's workloads first.
    pub fn remove_group(&self, name: &str) -> Result<(), GroupError> {
        let path = self.group_path(name)?;
        if name == DEFAULT_GROUP {
            return Err(GroupError::Default);
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(GroupError::NotFound(name.to_owned())),
            Err(e) => Err(io_err(&path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use apiary_config::{RunConfig, Source};

    #[test]
    fn create_list_and_remove_groups() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path().join("state"));
        assert_eq!(state.groups().unwrap().iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["default"]);
        assert!(state.group_exists("default").unwrap());
        assert!(!state.group_exists("team").unwrap());

        state.create_group("team").unwrap();
        state.create_group("alpha").unwrap();
        assert!(matches!(state.create_group("team"), Err(GroupError::AlreadyExists(_))));
        assert!(matches!(state.create_group("default"), Err(GroupError::Default)));
        let names: Vec<String> = state.groups().unwrap().into_iter().map(|g| g.name).collect();
        assert_eq!(names, ["default", "alpha", "team"]);
        assert!(!state.load_group("team").unwrap().created_at.is_empty());

        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.root().join("groups")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        state.remove_group("team").unwrap();
        assert!(!state.group_exists("team").unwrap());
        assert!(matches!(state.remove_group("team"), Err(GroupError::NotFound(_))));
        assert!(matches!(state.remove_group("default"), Err(GroupError::Default)));
    }

    #[test]
    fn group_names_follow_the_run_config_rules() {
        let state = StateDir::at("/tmp/never-created");
        for bad in ["../x", "A", "-a", "a b", "", &"g".repeat(64)] {
            assert!(matches!(state.create_group(bad), Err(GroupError::InvalidName(_))), "{bad:?}");
            assert!(matches!(state.group_exists(bad), Err(GroupError::InvalidName(_))), "{bad:?}");
        }
    }

    #[test]
    fn workloads_are_found_by_their_config_group() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::at(dir.path());
        for (name, group) in [("a", "team"), ("b", "default"), ("c", "team")] {
            let config = RunConfig::builder(name, Source::command("sleep", ["1"])).group(group).build().unwrap();
            state.save_config(&config).unwrap();
        }
        assert_eq!(state.workloads_in_group("team").unwrap(), ["a", "c"]);
        assert_eq!(state.workloads_in_group("default").unwrap(), ["b"]);
        assert!(state.workloads_in_group("other").unwrap().is_empty());
    }
}
