//! Reading a RunConfig from JSON or YAML text or a file, reporting the field path of every parse error.

use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use crate::error::{ConfigError, Format};
use crate::run_config::{RunConfig, SUPPORTED_SCHEMA_VERSIONS};

/// Largest configuration file read; real ones are a few kilobytes.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Only `schemaVersion`, read before the full document so a newer file gets "unsupported version"
/// instead of a confusing complaint about a field this build does not know.
#[derive(Deserialize)]
struct VersionProbe {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<serde_json::Value>,
}

impl RunConfig {
    /// Parses and validates JSON text.
    pub fn from_json_str(text: &str) -> Result<RunConfig, ConfigError> {
        Self::from_str_as(text, Format::Json)
    }

    /// Parses and validates YAML text.
    pub fn from_yaml_str(text: &str) -> Result<RunConfig, ConfigError> {
        Self::from_str_as(text, Format::Yaml)
    }

    /// Parses and validates text in the given format.
    pub fn from_str_as(text: &str, format: Format) -> Result<RunConfig, ConfigError> {
        let config = Self::parse_str(text, format)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses text without running [`RunConfig::validate`], for callers that adjust the value
    /// (e.g. apply command-line flags) before validating it.
    pub fn parse_str(text: &str, format: Format) -> Result<RunConfig, ConfigError> {
        check_version(text, format)?;
        match format {
            Format::Json => parse_json(text),
            Format::Yaml => parse_yaml(text),
        }
    }

    /// Reads, parses and validates a file. The format follows the extension (`.json`, `.yaml`,
    /// `.yml`); otherwise text starting with `{` is JSON and anything else YAML.
    pub fn from_path(path: impl AsRef<Path>) -> Result<RunConfig, ConfigError> {
        let path = path.as_ref();
        let io_err = |source| ConfigError::Io { path: path.to_path_buf(), source };
        let file = std::fs::File::open(path).map_err(io_err)?;
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text).map_err(io_err)?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(ConfigError::TooLarge { path: path.to_path_buf(), limit: MAX_FILE_BYTES });
        }
        let format = Format::for_path(path).unwrap_or_else(|| Format::sniff(&text));
        Self::from_str_as(&text, format)
    }
}

impl Format {
    /// The format an extension names, if it names one.
    pub fn for_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            _ => None,
        }
    }

    /// JSON when the first non-blank character is `{`, else YAML.
    pub fn sniff(text: &str) -> Format {
        match text.trim_start_matches('\u{feff}').trim_start().chars().next() {
            Some('{') => Format::Json,
            _ => Format::Yaml,
        }
    }
}

fn check_version(text: &str, format: Format) -> Result<(), ConfigError> {
    let probe: Option<VersionProbe> = match format {
        Format::Json => serde_json::from_str(text).ok(),
        Format::Yaml => serde_saphyr::from_str_with_options(text, yaml_options()).ok(),
    };
    // A document that is not even a mapping is reported by the full parse, with its position.
    let Some(probe) = probe else { return Ok(()) };
    match probe.schema_version {
        None => Err(ConfigError::Parse {
            format,
            path: "schemaVersion".to_owned(),
            message: format!(
                "missing; put `schemaVersion: {}` at the top of the document",
                SUPPORTED_SCHEMA_VERSIONS[0]
            ),
            line: None,
            column: None,
        }),
        Some(serde_json::Value::String(v)) if !SUPPORTED_SCHEMA_VERSIONS.contains(&v.as_str()) => {
            Err(ConfigError::UnsupportedVersion { found: v, supported: SUPPORTED_SCHEMA_VERSIONS })
        }
        Some(_) => Ok(()),
    }
}

fn yaml_options() -> serde_saphyr::Options {
    let mut opts = serde_saphyr::Options::default();
    // The message is shown next to its path and line; a source snippet would repeat the file.
    opts.with_snippet = false;
    opts
}

fn parse_json(text: &str) -> Result<RunConfig, ConfigError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = tidy_path(e.path().to_string());
        json_error(path, e.into_inner())
    })?;
    de.end().map_err(|e| json_error(".".to_owned(), e))?;
    Ok(value)
}

fn json_error(path: String, err: serde_json::Error) -> ConfigError {
    let (line, column) = (err.line(), err.column());
    let mut message = err.to_string();
    // serde_json appends the position to its text; it is reported separately.
    let suffix = format!(" at line {line} column {column}");
    if let Some(stripped) = message.strip_suffix(&suffix) {
        message = stripped.to_owned();
    }
    let known = line > 0;
    ConfigError::Parse {
        format: Format::Json,
        path,
        message,
        line: known.then_some(line as u64),
        column: known.then_some(column as u64),
    }
}

fn parse_yaml(text: &str) -> Result<RunConfig, ConfigError> {
    let mut track = serde_path_to_error::Track::new();
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, yaml_options(), |de| {
        RunConfig::deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
    });
    result.map_err(|err| {
        let location = err.location();
        ConfigError::Parse {
            format: Format::Yaml,
            path: tidy_path(track.path().to_string()),
            message: yaml_message(&err),
            line: location.map(|l| l.line()),
            column: location.map(|l| l.column()),
        }
    })
}

/// The message alone: the position is reported in its own fields, and saphyr's rendering appends it.
fn yaml_message(err: &serde_saphyr::Error) -> String {
    use serde_saphyr::MessageFormatter as _;
    let mut inner = err;
    while let serde_saphyr::Error::WithSnippet { error, .. } | serde_saphyr::Error::AliasError { error, .. } = inner {
        inner = error;
    }
    serde_saphyr::UserMessageFormatter.format_message(inner).into_owned()
}

/// serde_path_to_error writes `?` for a map key not yet known (e.g. a syntax error or duplicate key
/// at a key position); the enclosing path is what a person can act on.
fn tidy_path(path: String) -> String {
    let mut p = path.as_str();
    while let Some(rest) = p.strip_suffix('?') {
        p = rest.strip_suffix('.').unwrap_or(rest);
    }
    if p.is_empty() { ".".to_owned() } else { p.to_owned() }
}
