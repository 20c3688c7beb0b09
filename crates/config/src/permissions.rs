//! ToolHive permission profiles (`--permission-profile none|network|FILE`): which host paths a local
//! server may read or write and where it may connect, plus the sandbox switch next to it.
//!
//! The JSON format is ToolHive's (`toolhive-core/permissions`), field for field, so a profile file
//! written for `thv` works here. Unknown fields are refused rather than ignored: a misspelt `wirte`
//! silently dropped would change what the server may touch.

use std::io::Read;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Largest profile file read; real ones are a few hundred bytes.
pub const MAX_PROFILE_BYTES: u64 = 256 * 1024;

/// Name of the built-in profile with no network and no host paths.
pub const PROFILE_NONE: &str = "none";
/// Name of the built-in profile with all outbound network and no host paths (the default).
pub const PROFILE_NETWORK: &str = "network";

/// What a server may read, write and reach (ToolHive's permission profile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PermissionProfile {
    /// Profile name, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Host paths the server may read: `/host/path` or `/host/path:/path/inside`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<String>,
    /// Host paths the server may read and write (same forms as `read`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write: Vec<String>,
    /// Network access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkPermissions>,
    /// ToolHive's privileged containers; never granted by Apiary, accepted only as `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
}

/// The `network` part of a profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkPermissions {
    /// ToolHive's container network mode (`bridge`, `host`, `none`); kept for round trips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Connections the server may open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<OutboundPermissions>,
    /// Connections the server may accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound: Option<InboundPermissions>,
}

/// `network.outbound`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutboundPermissions {
    /// Any host, any port.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_allow_all: bool,
    /// Hosts allowed: `api.example.com` exactly, `.example.com` for it and its subdomains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_host: Vec<String>,
    /// Ports allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_port: Vec<u16>,
}

/// `network.inbound`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundPermissions {
    /// Hosts allowed to connect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_host: Vec<String>,
}

/// What the profile's network section amounts to for the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkAccess {
    /// No network at all (an empty network namespace).
    None,
    /// Every outbound connection.
    All,
    /// Some hosts or ports only: the sandbox has no network of its own and reaches those through
    /// the egress proxy (`apiary_runtime::sandbox::egress`).
    AllowList,
}

/// One `read` or `write` entry: a host path and where the server sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGrant {
    /// The path on the host.
    pub host: PathBuf,
    /// The path inside the sandbox (the host path unless the entry said `host:inside`).
    pub inside: PathBuf,
}

/// A profile file or name that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("permission profile {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any profile.
    #[error("permission profile {}: larger than {limit} bytes", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        limit: u64,
    },
    /// The JSON is malformed or has a field ToolHive's format does not have.
    #[error("permission profile {}: {message} (line {line}, column {column})", path.display())]
    Parse {
        /// The file (`-` for text not read from a file).
        path: PathBuf,
        /// serde_json's message.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// The profile parsed but cannot be honoured.
    #[error("permission profile {}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Default for PermissionProfile {
    /// The `network` built-in, ToolHive's default too.
    fn default() -> Self {
        PermissionProfile::network()
    }
}

impl PermissionProfile {
    /// The built-in `none`: no network, no host paths.
    pub fn none() -> Self {
        PermissionProfile {
            name: Some(PROFILE_NONE.to_owned()),
            read: Vec::new(),
            write: Vec::new(),
            network: None,
            privileged: false,
        }
    }

    /// The built-in `network`: all outbound connections, no host paths.
    pub fn network() -> Self {
        PermissionProfile {
            name: Some(PROFILE_NETWORK.to_owned()),
            read: Vec::new(),
            write: Vec::new(),
            network: Some(NetworkPermissions {
                mode: None,
                outbound: Some(OutboundPermissions { insecure_allow_all: true, ..Default::default() }),
                inbound: None,
            }),
            privileged: false,
        }
    }

    /// True for the default profile (so a RunConfig need not spell it out).
    pub fn is_default(&self) -> bool {
        *self == PermissionProfile::network()
    }

    /// A built-in by name, or the profile in the file `arg` names (ToolHive's `--permission-profile`).
    pub fn from_arg(arg: &str) -> Result<Self, ProfileError> {
        match arg {
            PROFILE_NONE => Ok(PermissionProfile::none()),
            PROFILE_NETWORK => Ok(PermissionProfile::network()),
            path => PermissionProfile::from_path(path),
        }
    }

    /// Reads, parses and checks a profile file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, ProfileError> {
        let path = path.as_ref();
        let io = |source| ProfileError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut text = String::new();
        file.take(MAX_PROFILE_BYTES + 1).read_to_string(&mut text).map_err(io)?;
        if text.len() as u64 > MAX_PROFILE_BYTES {
            return Err(ProfileError::TooLarge { path: path.to_path_buf(), limit: MAX_PROFILE_BYTES });
        }
        Self::from_json_str(&text, path)
    }

    /// Parses and checks profile JSON; `origin` names it in errors.
    pub fn from_json_str(text: &str, origin: &Path) -> Result<Self, ProfileError> {
        let profile: PermissionProfile = serde_json::from_str(text).map_err(|e| ProfileError::Parse {
            path: origin.to_path_buf(),
            message: strip_position(&e.to_string()),
            line: e.line(),
            column: e.column(),
        })?;
        profile.check().map_err(|message| ProfileError::Invalid { path: origin.to_path_buf(), message })?;
        Ok(profile)
    }

    /// The first rule the profile breaks, if any: paths must be absolute host paths (ToolHive's
    /// `volume://` sources and relative paths have no meaning for a local process), and
    /// `privileged` is never granted.
    pub fn check(&self) -> Result<(), String> {
        if self.privileged {
            return Err("privileged: true is not supported; Apiary never runs servers privileged".to_owned());
        }
        for (field, entries) in [("read", &self.read), ("write", &self.write)] {
            for (i, entry) in entries.iter().enumerate() {
                parse_grant(entry).map_err(|why| format!("{field}[{i}]: {entry:?} {why}"))?;
            }
        }
        Ok(())
    }

    /// The `read` entries as paths (entries that [`PermissionProfile::check`] refuses are skipped).
    pub fn read_grants(&self) -> Vec<PathGrant> {
        self.read.iter().filter_map(|e| parse_grant(e).ok()).collect()
    }

    /// The `write` entries as paths (entries that [`PermissionProfile::check`] refuses are skipped).
    pub fn write_grants(&self) -> Vec<PathGrant> {
        self.write.iter().filter_map(|e| parse_grant(e).ok()).collect()
    }

    /// What the network section allows.
    pub fn network_access(&self) -> NetworkAccess {
        let Some(out) = self.network.as_ref().and_then(|n| n.outbound.as_ref()) else {
            return NetworkAccess::None;
        };
        if out.insecure_allow_all {
            NetworkAccess::All
        } else if out.allow_host.is_empty() && out.allow_port.is_empty() {
            NetworkAccess::None
        } else {
            NetworkAccess::AllowList
        }
    }
}

/// `/host` or `/host:/inside`, both absolute and free of `..`.
fn parse_grant(entry: &str) -> Result<PathGrant, &'static str> {
    if entry.contains("://") {
        return Err("is a volume; a local process can only be given host paths");
    }
    if entry.contains('\0') {
        return Err("contains a NUL character");
    }
    let (host, inside) = match entry.split_once(':') {
        Some((h, i)) => (h, i),
        None => (entry, entry),
    };
    for p in [host, inside] {
        let path = Path::new(p);
        if !path.is_absolute() {
            return Err("is not an absolute path");
        }
        if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err("contains `..`");
        }
    }
    if inside == "/" {
        return Err("cannot replace the sandbox's root");
    }
    Ok(PathGrant { host: PathBuf::from(host), inside: PathBuf::from(inside) })
}

/// serde_json appends " at line L column C"; the error carries those as fields instead.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Whether a local server runs in Apiary's process sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// Namespaces, a read-only view of the host, Landlock, seccomp and rlimits (the default).
    #[default]
    Sandbox,
    /// A plain child process with the user's full rights.
    None,
}

impl Isolation {
    /// `sandbox` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::Sandbox => "sandbox",
            Isolation::None => "none",
        }
    }

    /// True for the default.
    pub fn is_default(&self) -> bool {
        *self == Isolation::Sandbox
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> Result<PermissionProfile, ProfileError> {
        PermissionProfile::from_json_str(text, Path::new("p.json"))
    }

    #[test]
    fn toolhive_example_parses() {
        let p = parse(
            r#"{ "name": "p", "read": ["/host/a", "/host/b:/ctr/b"], "write": ["/host/out:/out"],
                 "network": { "mode": "bridge",
                   "outbound": { "insecure_allow_all": false, "allow_host": ["api.example.com"], "allow_port": [443] },
                   "inbound": { "allow_host": ["host.docker.internal"] } },
                 "privileged": false }"#,
        )
        .unwrap();
        assert_eq!(p.read_grants()[1], PathGrant { host: "/host/b".into(), inside: "/ctr/b".into() });
        assert_eq!(p.write_grants()[0].inside, PathBuf::from("/out"));
        assert_eq!(p.network_access(), NetworkAccess::AllowList);
    }

    #[test]
    fn builtins_by_name() {
        assert_eq!(PermissionProfile::from_arg("none").unwrap().network_access(), NetworkAccess::None);
        assert_eq!(PermissionProfile::from_arg("network").unwrap().network_access(), NetworkAccess::All);
        assert!(PermissionProfile::default().is_default());
        assert!(!PermissionProfile::none().is_default());
    }

    #[test]
    fn unknown_field_is_refused_with_position() {
        let err = parse("{\n  \"read\": [],\n  \"wirte\": [\"/x\"]\n}").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("unknown field `wirte`"), "{text}");
        assert!(text.contains("line 3, column 9"), "{text}");
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let err = parse("{\"read\": [\"/a\",]}").unwrap_err();
        assert!(matches!(err, ProfileError::Parse { line: 1, .. }), "{err}");
    }

    #[test]
    fn wrong_type_is_refused() {
        let err = parse(r#"{"network": {"outbound": {"allow_port": ["443"]}}}"#).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }

    #[test]
    fn relative_volume_and_privileged_are_refused() {
        for (text, want) in [
            (r#"{"read": ["data"]}"#, "read[0]: \"data\" is not an absolute path"),
            (r#"{"write": ["volume://v:/data"]}"#, "is a volume"),
            (r#"{"read": ["/a/../etc"]}"#, "contains `..`"),
            (r#"{"privileged": true}"#, "privileged: true is not supported"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn empty_outbound_means_no_network() {
        assert_eq!(parse(r#"{"network": {"outbound": {}}}"#).unwrap().network_access(), NetworkAccess::None);
        assert_eq!(parse("{}").unwrap().network_access(), NetworkAccess::None);
    }

    #[test]
    fn serialises_back_to_toolhive_names() {
        let text = serde_json::to_string(&PermissionProfile::network()).unwrap();
        assert_eq!(text, r#"{"name":"network","network":{"outbound":{"insecure_allow_all":true}}}"#);
        assert_eq!(parse(&text).unwrap(), PermissionProfile::network());
    }
}
