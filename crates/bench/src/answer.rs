//! Checks one answer of a Streamable HTTP POST, given as a JSON body or as an SSE stream: the
//! JSON-RPC response with the request's id must be there, must not be an error, and (for
//! `tools/call echo`) must carry back exactly the text sent. Parsing borrows from the body so
//! large payloads are not copied.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Why an answer does not count as a good one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the body is not JSON-RPC: {0}")]
    NotJson(String),
    #[error("no response with id {0} in the answer")]
    NoResponse(u64),
    #[error("a JSON-RPC error came back: {0}")]
    RpcError(String),
    #[error("the tool reported an error")]
    ToolError,
    #[error("the echoed text differs from the one sent")]
    WrongEcho,
    #[error("the response has no result")]
    NoResult,
}

impl AnswerError {
    /// A short stable name for counting errors by kind.
    pub fn kind(&self) -> &'static str {
        match self {
            AnswerError::NotJson(_) => "not_json",
            AnswerError::NoResponse(_) => "no_response",
            AnswerError::RpcError(_) => "rpc_error",
            AnswerError::ToolError => "tool_error",
            AnswerError::WrongEcho => "wrong_echo",
            AnswerError::NoResult => "no_result",
        }
    }
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CallResult<'a> {
    #[serde(borrow, default)]
    content: Vec<Content<'a>>,
    #[serde(rename = "isError", default)]
    is_error: bool,
}

#[derive(Deserialize)]
struct Content<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

/// Whether a `Content-Type` value announces an SSE stream.
pub fn is_sse(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}

/// The `data` of each event of an SSE body, in order; events without data (priming events,
/// comments) are skipped.
pub fn sse_data(body: &str) -> Vec<Cow<'_, str>> {
    let mut out = Vec::new();
    let mut current: Option<Cow<'_, str>> = None;
    // Lines end in \n, \r\n or \r; an empty line ends an event.
    for line in body.split('\n').flat_map(|l| l.split('\r')) {
        if line.is_empty() {
            if let Some(data) = current.take() {
                out.push(data);
            }
            continue;
        }
        let Some(value) = line.strip_prefix("data") else { continue };
        let value = match value.strip_prefix(':') {
            Some(v) => v.strip_prefix(' ').unwrap_or(v),
            None if value.is_empty() => "",
            None => continue, // a field named e.g. `dataX`
        };
        current = Some(match current.take() {
            None => Cow::Borrowed(value),
            Some(prev) => Cow::Owned(format!("{prev}\n{value}")),
        });
    }
    // A stream cut without a final blank line: the last event is incomplete, dropped as the
    // SSE rules say.
    out.into_iter().filter(|d| !d.is_empty()).collect()
}

/// Finds the response to request `id` in `body` and runs `verify` on its raw `result`.
fn with_result(
    body: &[u8],
    sse: bool,
    id: u64,
    verify: impl Fn(&RawValue) -> Result<(), AnswerError>,
) -> Result<(), AnswerError> {
    let text = std::str::from_utf8(body).map_err(|e| AnswerError::NotJson(e.to_string()))?;
    let want = id.to_string();
    // Ok(false): not the response looked for (a notification, a server request, another id).
    let check = |json: &str| -> Result<bool, AnswerError> {
        let m: Message<'_> = serde_json::from_str(json).map_err(|e| AnswerError::NotJson(e.to_string()))?;
        if m.method.is_some() || m.id.is_none_or(|i| i.get() != want) {
            return Ok(false);
        }
        if let Some(error) = m.error {
            return Err(AnswerError::RpcError(error.get().chars().take(200).collect()));
        }
        verify(m.result.ok_or(AnswerError::NoResult)?).map(|()| true)
    };
    if sse {
        for data in sse_data(text) {
            if check(&data)? {
                return Ok(());
            }
        }
        Err(AnswerError::NoResponse(id))
    } else if check(text)? {
        Ok(())
    } else {
        Err(AnswerError::NoResponse(id))
    }
}

/// Checks that `body` answers request `id` with a result (any result: used for `initialize`).
pub fn check_result(body: &[u8], sse: bool, id: u64) -> Result<(), AnswerError> {
    with_result(body, sse, id, |_| Ok(()))
}

/// Checks that `body` answers `tools/call echo` request `id` with the text `expected`.
pub fn check_echo(body: &[u8], sse: bool, id: u64, expected: &str) -> Result<(), AnswerError> {
    with_result(body, sse, id, |raw| {
        let result: CallResult<'_> =
            serde_json::from_str(raw.get()).map_err(|e| AnswerError::NotJson(e.to_string()))?;
        if result.is_error {
            return Err(AnswerError::ToolError);
        }
        match result.content.as_slice() {
            [only] if only.kind == "text" && only.text.as_deref() == Some(expected) => Ok(()),
            _ => Err(AnswerError::WrongEcho),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str =
        r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"abc"}],"isError":false}}"#;

    #[test]
    fn a_json_answer_with_the_right_id_and_text_passes() {
        assert_eq!(check_echo(GOOD.as_bytes(), false, 7, "abc"), Ok(()));
        assert_eq!(check_echo(GOOD.as_bytes(), false, 8, "abc"), Err(AnswerError::NoResponse(8)));
        assert_eq!(check_echo(GOOD.as_bytes(), false, 7, "abd"), Err(AnswerError::WrongEcho));
    }

    #[test]
    fn errors_and_tool_errors_are_told_apart() {
        let rpc = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"bad"}}"#;
        assert!(matches!(check_echo(rpc.as_bytes(), false, 1, ""), Err(AnswerError::RpcError(_))));
        let tool = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"x"}],"isError":true}}"#;
        assert_eq!(check_echo(tool.as_bytes(), false, 1, "x"), Err(AnswerError::ToolError));
        assert!(matches!(check_echo(b"<html>", false, 1, ""), Err(AnswerError::NotJson(_))));
        assert_eq!(check_result(br#"{"jsonrpc":"2.0","id":1}"#, false, 1), Err(AnswerError::NoResult));
    }

    #[test]
    fn an_sse_answer_skips_priming_events_and_notifications() {
        let body = format!(
            "id: 0\nretry: 3000\ndata:\n\n: comment\n\nevent: message\ndata: {}\n\nevent: message\r\ndata: {GOOD}\r\n\r\n",
            r#"{"jsonrpc":"2.0","method":"notifications/message","params":{}}"#
        );
        assert_eq!(check_echo(body.as_bytes(), true, 7, "abc"), Ok(()));
        assert_eq!(check_echo(body.as_bytes(), true, 9, "abc"), Err(AnswerError::NoResponse(9)));
    }

    #[test]
    fn sse_data_lines_join_and_unfinished_events_drop() {
        assert_eq!(sse_data("data: a\ndata:b\n\ndata: c"), vec![Cow::Owned::<str>("a\nb".into())]);
        assert_eq!(sse_data("datax: 1\n\n"), Vec::<Cow<'_, str>>::new());
    }

    #[test]
    fn string_ids_are_not_number_ids() {
        let body = r#"{"jsonrpc":"2.0","id":"7","result":{"content":[]}}"#;
        assert_eq!(check_result(body.as_bytes(), false, 7), Err(AnswerError::NoResponse(7)));
    }

    #[test]
    fn content_types() {
        assert!(is_sse(Some("text/event-stream; charset=utf-8")));
        assert!(!is_sse(Some("application/json")));
        assert!(!is_sse(None));
    }
}
