//! Where the MCP server comes from: a package, a local command, a container image or a remote URL.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// The server to run or reach. Exactly one member is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// A package fetched and run by a launcher (`npx` or `uvx`).
    Package(PackageSource),
    /// A program on this machine.
    Command(CommandSource),
    /// A container image.
    Image(ImageSource),
    /// A server already running elsewhere, reached over HTTP.
    Remote(RemoteSource),
}

/// Package launchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Ecosystem {
    /// Node packages from npm, run with `npx -y <name>`.
    Npx,
    /// Python packages from PyPI, run with `uvx`.
    Uvx,
}

impl Ecosystem {
    /// The word used in files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Npx => "npx",
            Ecosystem::Uvx => "uvx",
        }
    }
}

/// A package run by its ecosystem's launcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PackageSource {
    /// Which launcher runs the package.
    pub ecosystem: Ecosystem,
    /// Package name, optionally with a version: npx `@scope/name@1.2.3`; uvx `name`, `name@1.2.3`,
    /// `name==1.2.3`, `name[extra]>=1.0`.
    pub name: String,
}

/// A program on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CommandSource {
    /// Program path, or a name looked up in `PATH`.
    pub program: String,
    /// Arguments given to the program before the top-level `args`.
    #[serde(default)]
    pub args: Vec<String>,
}

/// A container image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageSource {
    /// Image reference, e.g. `ghcr.io/org/server:tag` or `repo@sha256:...`.
    #[serde(rename = "ref")]
    pub reference: String,
}

/// A remote MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteSource {
    /// `http://` or `https://` URL of the server's MCP endpoint.
    pub url: String,
}

impl Source {
    /// An npm package run with `npx -y`.
    pub fn npx(name: impl Into<String>) -> Self {
        Source::Package(PackageSource { ecosystem: Ecosystem::Npx, name: name.into() })
    }

    /// A PyPI package run with `uvx`.
    pub fn uvx(name: impl Into<String>) -> Self {
        Source::Package(PackageSource { ecosystem: Ecosystem::Uvx, name: name.into() })
    }

    /// A local program with its arguments.
    pub fn command<I, S>(program: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Source::Command(CommandSource { program: program.into(), args: args.into_iter().map(Into::into).collect() })
    }

    /// A container image.
    pub fn image(reference: impl Into<String>) -> Self {
        Source::Image(ImageSource { reference: reference.into() })
    }

    /// A remote server URL.
    pub fn remote(url: impl Into<String>) -> Self {
        Source::Remote(RemoteSource { url: url.into() })
    }

    /// The member's name as written in files: `package`, `command`, `image` or `remote`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Package(_) => "package",
            Source::Command(_) => "command",
            Source::Image(_) => "image",
            Source::Remote(_) => "remote",
        }
    }
}

/// The on-disk shape, read first so that "two members" and "no member" get a clear message
/// (serde's externally tagged enums only say "invalid type" or "expected `}`").
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SourceRepr {
    package: Option<PackageSource>,
    command: Option<CommandSource>,
    image: Option<ImageSource>,
    remote: Option<RemoteSource>,
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = SourceRepr::deserialize(deserializer)?;
        let mut found: Vec<Source> = Vec::with_capacity(1);
        found.extend(repr.package.map(Source::Package));
        found.extend(repr.command.map(Source::Command));
        found.extend(repr.image.map(Source::Image));
        found.extend(repr.remote.map(Source::Remote));
        if found.len() == 1
            && let Some(only) = found.pop()
        {
            return Ok(only);
        }
        let given = if found.is_empty() {
            "none was given".to_owned()
        } else {
            let kinds: Vec<&str> = found.iter().map(Source::kind).collect();
            format!("{} were given", kinds.join(" and "))
        };
        Err(serde::de::Error::custom(format!("give exactly one of package, command, image or remote; {given}")))
    }
}
