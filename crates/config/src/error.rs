//! Typed errors of the config crate: parse, validation, version and I/O failures, each readable by people.

use std::fmt;
use std::path::PathBuf;

/// Which text format a configuration was read from or written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON (`.json`).
    Json,
    /// YAML (`.yaml`, `.yml`).
    Yaml,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Json => "JSON",
            Format::Yaml => "YAML",
        })
    }
}

/// One broken rule, found by [`crate::RunConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// Dotted field path, e.g. `proxy.port`, `env.1BAD`, `proxy.allowedOrigins[2]`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every broken rule of one configuration, in field order. Never empty when returned as an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationErrors {
    errors: Vec<ValidationError>,
}

impl ValidationErrors {
    /// The individual errors.
    pub fn errors(&self) -> &[ValidationError] {
        &self.errors
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// True when no rule is broken.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The first error at exactly `path`, if any (handy for callers that highlight one field).
    pub fn at(&self, path: &str) -> Option<&ValidationError> {
        self.errors.iter().find(|e| e.path == path)
    }

    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ValidationError { path: path.into(), message: message.into() });
    }

    pub(crate) fn into_result(self) -> Result<(), ValidationErrors> {
        if self.errors.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for ValidationErrors {
    /// One error per line, `path: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

impl IntoIterator for ValidationErrors {
    type Item = ValidationError;
    type IntoIter = std::vec::IntoIter<ValidationError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

/// Everything that can go wrong reading, checking or writing a [`crate::RunConfig`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text is not well-formed, has a value of the wrong type, or has a field this version does not know.
    #[error("{}", parse_display(*.format, path, message, *.line, *.column))]
    Parse {
        /// Format that was being parsed.
        format: Format,
        /// Dotted path of the offending field (`.` for the document itself).
        path: String,
        /// What is wrong.
        message: String,
        /// 1-based line, when known.
        line: Option<u64>,
        /// 1-based column, when known.
        column: Option<u64>,
    },
    /// The document parsed but breaks one or more rules.
    #[error("{0}")]
    Validation(#[from] ValidationErrors),
    /// `schemaVersion` names a version this build does not understand.
    #[error(
        "schemaVersion: {found:?} is not supported; supported versions: {}",
        supported.join(", ")
    )]
    UnsupportedVersion {
        /// The version found in the document.
        found: String,
        /// Versions this build reads.
        supported: &'static [&'static str],
    },
    /// The file is larger than any sane configuration.
    #[error("{}: file is larger than {limit} bytes; a RunConfig is never that big", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap in bytes.
        limit: u64,
    },
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Serialising failed (not expected for a well-formed value; reported rather than hidden).
    #[error("cannot write the configuration as {format}: {message}")]
    Serialize {
        /// Target format.
        format: Format,
        /// The serialiser's message.
        message: String,
    },
}

fn parse_display(format: Format, path: &str, message: &str, line: Option<u64>, column: Option<u64>) -> String {
    let mut out = String::new();
    if path != "." && !path.is_empty() {
        out.push_str(path);
        out.push_str(": ");
    } else {
        out.push_str("invalid ");
        out.push_str(&format.to_string());
        out.push_str(": ");
    }
    out.push_str(message);
    match (line, column) {
        (Some(l), Some(c)) => out.push_str(&format!(" (line {l}, column {c})")),
        (Some(l), None) => out.push_str(&format!(" (line {l})")),
        _ => {}
    }
    out
}

impl ConfigError {
    /// The dotted field path this error is about, when it is about one field.
    pub fn field_path(&self) -> Option<&str> {
        match self {
            ConfigError::Parse { path, .. } => Some(path),
            ConfigError::UnsupportedVersion { .. } => Some("schemaVersion"),
            ConfigError::Validation(v) => v.errors().first().map(|e| e.path.as_str()),
            _ => None,
        }
    }
}
