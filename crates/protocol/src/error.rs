//! Why a byte string is not a usable JSON-RPC message, and how Apiary builds the error
//! responses it originates itself.

use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::codes;

/// The class of a parse failure; decides the JSON-RPC code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// Not JSON text (or not UTF-8): -32700, with the byte offset where it went wrong.
    Parse { offset: usize },
    /// Nested deeper than [`crate::envelope::MAX_DEPTH`]: -32700.
    TooDeep,
    /// JSON, but not a JSON-RPC message: -32600.
    InvalidRequest,
}

/// A message that could not be used, with what to tell its sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    kind: ParseErrorKind,
    message: String,
    /// The id to echo: only a string or integer id that could be read.
    id: Option<String>,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind, message: String) -> Self {
        ParseError { kind, message, id: None }
    }

    pub(crate) fn invalid_request(message: &str, id: Option<String>) -> Self {
        ParseError { kind: ParseErrorKind::InvalidRequest, message: format!("Invalid Request: {message}"), id }
    }

    /// Classifies a serde_json failure: syntax → -32700, shape → -32600.
    pub(crate) fn from_serde(input: &[u8], e: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let text = e.to_string();
        if text.starts_with("recursion limit exceeded") {
            return ParseError::new(
                ParseErrorKind::TooDeep,
                format!("Parse error: nesting deeper than {}", crate::envelope::MAX_DEPTH),
            );
        }
        match e.classify() {
            Category::Data => ParseError::invalid_request("not a JSON-RPC message object", None),
            Category::Io | Category::Syntax | Category::Eof => {
                let offset = offset_of(input, e.line(), e.column());
                ParseError::new(
                    ParseErrorKind::Parse { offset },
                    format!("Parse error at byte {offset}: {}", strip_position(&text)),
                )
            }
        }
    }

    pub fn kind(&self) -> &ParseErrorKind {
        &self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON-RPC code this failure is answered with.
    pub fn code(&self) -> i32 {
        match self.kind {
            ParseErrorKind::Parse { .. } | ParseErrorKind::TooDeep => codes::PARSE_ERROR,
            ParseErrorKind::InvalidRequest => codes::INVALID_REQUEST,
        }
    }

    /// The id to echo, as JSON text.
    pub fn id_raw(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The error response for this failure.
    pub fn to_response(&self) -> Bytes {
        error_response(self.id_raw(), self.code(), &self.message, None)
    }
}

/// serde_json reports 1-based line and column; turn them into a byte offset.
fn offset_of(input: &[u8], line: usize, column: usize) -> usize {
    if line == 0 {
        return 0;
    }
    let mut seen = 1;
    let mut start = 0;
    if line > 1 {
        for (i, b) in input.iter().enumerate() {
            if *b == b'\n' {
                seen += 1;
                if seen == line {
                    start = i + 1;
                    break;
                }
            }
        }
    }
    (start + column.saturating_sub(1)).min(input.len())
}

/// serde_json appends " at line L column C"; the byte offset replaces it.
fn strip_position(text: &str) -> &str {
    text.rfind(" at line ").map_or(text, |i| &text[..i])
}

#[derive(Serialize)]
struct ErrorObject<'a> {
    code: i32,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a serde_json::Value>,
}

#[derive(Serialize)]
struct ErrorResponse<'a> {
    jsonrpc: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a RawValue>,
    error: ErrorObject<'a>,
}

/// A JSON-RPC error response originated by Apiary. `id` is JSON text (`7`, `"a"`); when it
/// is `None` the response has no `id` member at all (bad-input.md, rule 2).
pub fn error_response(id: Option<&str>, code: i32, message: &str, data: Option<&serde_json::Value>) -> Bytes {
    let raw_id: Option<Box<RawValue>> = id.and_then(|t| RawValue::from_string(t.to_owned()).ok());
    let body = ErrorResponse { jsonrpc: "2.0", id: raw_id.as_deref(), error: ErrorObject { code, message, data } };
    // Serialising plain structs of strings and numbers cannot fail.
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// A JSON-RPC success response originated by Apiary, `result` given as JSON text.
pub fn result_response(id: &str, result: &str) -> Bytes {
    Bytes::from(format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_shapes() {
        let b = error_response(Some("7"), -32600, "bad", None);
        assert_eq!(&b[..], br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32600,"message":"bad"}}"#);
        let data = serde_json::json!({"limit": 5});
        let b = error_response(None, -31002, "full", Some(&data));
        assert_eq!(&b[..], br#"{"jsonrpc":"2.0","error":{"code":-31002,"message":"full","data":{"limit":5}}}"#);
    }

    #[test]
    fn offsets_follow_lines() {
        assert_eq!(offset_of(b"ab\ncd", 2, 2), 4);
        assert_eq!(offset_of(b"abc", 1, 3), 2);
    }
}
