//! Reading a small JSON or YAML document (an audit config, a tools-override file) into a typed
//! value, with errors that name the file, the line and the reason. Shared by `audit` and `tools`.

use std::fmt;

use serde::de::DeserializeOwned;

/// Largest document accepted; real ones are a few hundred bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Why a document could not be read, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentError {
    /// The file (or other source) the text came from.
    pub origin: String,
    /// 1-based line, when the parser knows it.
    pub line: Option<u64>,
    /// 1-based column, when the parser knows it.
    pub column: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.origin, self.reason),
            (Some(l), None) => write!(f, "{}:{l}: {}", self.origin, self.reason),
            _ => write!(f, "{}: {}", self.origin, self.reason),
        }
    }
}

impl std::error::Error for DocumentError {}

impl DocumentError {
    pub(crate) fn new(origin: &str, line: Option<u64>, reason: impl Into<String>) -> DocumentError {
        DocumentError { origin: origin.to_owned(), line, column: None, reason: reason.into() }
    }
}

/// Parses `text` as JSON when its first non-blank character is `{`, else as YAML.
pub fn parse_document<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, DocumentError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::new(origin, None, format!("larger than {MAX_DOCUMENT_BYTES} bytes")));
    }
    let body = text.trim_start_matches('\u{feff}');
    if body.trim_start().starts_with('{') { parse_json(body, origin) } else { parse_yaml(body, origin) }
}

fn parse_json<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, DocumentError> {
    serde_json::from_str(text).map_err(|e| {
        let (line, column) = (e.line() as u64, e.column() as u64);
        let mut reason = e.to_string();
        // serde_json appends the position to its text; it is reported in its own fields.
        if let Some(stripped) = reason.strip_suffix(&format!(" at line {line} column {column}")) {
            reason = stripped.to_owned();
        }
        let known = line > 0;
        DocumentError {
            origin: origin.to_owned(),
            line: known.then_some(line),
            column: known.then_some(column),
            reason,
        }
    })
}

fn parse_yaml<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, DocumentError> {
    let mut opts = serde_saphyr::Options::default();
    // The reason is shown next to its line; a source snippet would repeat the file.
    opts.with_snippet = false;
    serde_saphyr::from_str_with_options(text, opts).map_err(|err| {
        let location = err.location();
        DocumentError {
            origin: origin.to_owned(),
            line: location.map(|l| l.line()),
            column: location.map(|l| l.column()),
            reason: yaml_reason(&err),
        }
    })
}

/// The message alone: saphyr's rendering appends the position, which is reported separately.
fn yaml_reason(err: &serde_saphyr::Error) -> String {
    use serde_saphyr::MessageFormatter as _;
    let mut inner = err;
    while let serde_saphyr::Error::WithSnippet { error, .. } | serde_saphyr::Error::AliasError { error, .. } = inner {
        inner = error;
    }
    serde_saphyr::UserMessageFormatter.format_message(inner).into_owned()
}

/// The 1-based line of the first occurrence of `word` in `text` that is not part of a longer
/// name (for errors found after parsing, when the parser's position is gone).
pub(crate) fn line_of_word(text: &str, word: &str) -> Option<u64> {
    if word.is_empty() {
        return None;
    }
    let is_name = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-');
    let at = text
        .match_indices(word)
        .map(|(i, _)| i)
        .find(|&i| !is_name(text[..i].chars().next_back()) && !is_name(text[i + word.len()..].chars().next()))?;
    Some(text[..at].bytes().filter(|b| *b == b'\n').count() as u64 + 1)
}
