//! A byte-recording MCP server for tests that check a proxy forwards messages unchanged.
//!
//! The fixture server proper is built on rmcp, which parses every message into types, so it
//! cannot tell a test which bytes it got. This one is hand-rolled: it answers `initialize`,
//! `ping`, `tools/list` and `tools/call` of its one tool `raw_echo`, and the result of a call
//! carries the exact line it received (`received`, a JSON string) and the call's raw
//! `arguments`, next to members no re-serialiser keeps as written (`1.50`, a big integer,
//! escapes). A call carrying `params._meta.progressToken` is first answered with a
//! `notifications/progress` carrying that token as written, with the same kind of members.
//!
//! Two more tools help with notifications, which get no answer: `raw_hold` is never answered
//! (a call to cancel), and `raw_seen` answers with every line received so far
//! (`{"lines":[...]}`, the last [`RAW_ECHO_HISTORY`] kept).
//!
//! Serve it over stdio with [`serve_raw_echo_io`] (the binary's `--raw-echo`), or over HTTP
//! with [`raw_echo_router`] (Streamable HTTP, one fixed session id).

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// The tool the raw echo server offers.
pub const RAW_ECHO_TOOL: &str = "raw_echo";

/// The session id the HTTP flavour hands out on `initialize`.
pub const RAW_ECHO_SESSION: &str = "raw-echo-1";

/// Members after `arguments` in a call's result, spelled as no re-serialiser keeps them.
pub const RAW_ECHO_TAIL: &str = r#""z":1.50,"big":12345678901234567890123,"huge":1e400,"e":"\u00e9\/""#;

/// The `progress` members of the notification sent ahead of a call's answer.
pub const RAW_ECHO_PROGRESS: &str = r#""progress":1.50,"total":1e400,"message":"\u00e9\/""#;

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    method: Option<String>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
    #[serde(borrow, rename = "_meta", default)]
    meta: Option<Meta<'a>>,
    #[serde(default, rename = "protocolVersion")]
    protocol_version: Option<String>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, rename = "progressToken", default)]
    progress_token: Option<&'a RawValue>,
}

/// How many received lines `raw_seen` reports (the oldest are dropped).
pub const RAW_ECHO_HISTORY: usize = 256;

/// The raw echo server's state: the lines it received.
#[derive(Debug, Default)]
pub struct RawEcho {
    seen: std::collections::VecDeque<String>,
}

impl RawEcho {
    /// Records `line` and returns the frames that answer it.
    pub fn answer(&mut self, line: &str) -> Vec<String> {
        if self.seen.len() == RAW_ECHO_HISTORY {
            self.seen.pop_front();
        }
        self.seen.push_back(line.to_owned());
        let seen = || {
            let lines: Vec<&String> = self.seen.iter().collect();
            serde_json::to_string(&lines).unwrap_or_default()
        };
        raw_echo_answer(line, seen)
    }
}

/// The frames that answer one received line (none for a notification or a response);
/// `seen` gives the JSON array of lines received so far.
fn raw_echo_answer(line: &str, seen: impl FnOnce() -> String) -> Vec<String> {
    let Ok(msg) = serde_json::from_str::<Incoming<'_>>(line) else {
        return vec![r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}"#.to_owned()];
    };
    let (Some(id), Some(method)) = (msg.id, msg.method) else {
        return Vec::new();
    };
    let id = id.get();
    let params: Option<CallParams<'_>> = msg.params.and_then(|p| serde_json::from_str(p.get()).ok());
    let result = match method.as_str() {
        "initialize" => {
            let version = params.and_then(|p| p.protocol_version).unwrap_or_else(|| "2025-06-18".into());
            let version = serde_json::to_string(&version).unwrap_or_default();
            format!(
                r#"{{"protocolVersion":{version},"capabilities":{{"tools":{{}}}},"serverInfo":{{"name":"raw-echo","version":"1"}}}}"#
            )
        }
        "ping" => "{}".to_owned(),
        "tools/list" => format!(
            r#"{{"tools":[{{"name":"{RAW_ECHO_TOOL}","description":"echoes the bytes it got","inputSchema":{{"type":"object"}}}}]}}"#
        ),
        "tools/call" if line.contains("\"raw_hold\"") => return Vec::new(),
        "tools/call" if line.contains("\"raw_seen\"") => format!(r#"{{"content":[],"lines":{}}}"#, seen()),
        "tools/call" => {
            let mut frames = Vec::new();
            let token = params.as_ref().and_then(|p| p.meta.as_ref()).and_then(|m| m.progress_token);
            if let Some(token) = token {
                frames.push(format!(
                    r#"{{"jsonrpc":"2.0","method":"notifications/progress","params":{{"progressToken":{},{RAW_ECHO_PROGRESS}}}}}"#,
                    token.get()
                ));
            }
            let received = serde_json::to_string(line).unwrap_or_default();
            let arguments = params.as_ref().and_then(|p| p.arguments).map_or("null", RawValue::get);
            frames.push(format!(
                r#"{{"jsonrpc":"2.0","id":{id},"result":{{"content":[],"received":{received},"arguments":{arguments},{RAW_ECHO_TAIL}}}}}"#
            ));
            return frames;
        }
        other => {
            let other = serde_json::to_string(other).unwrap_or_default();
            return vec![format!(
                r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32601,"message":"Method not found","data":{{"method":{other}}}}}}}"#
            )];
        }
    };
    vec![format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#)]
}

/// Serves newline-delimited JSON-RPC on `input`/`output` until `input` ends.
pub async fn serve_raw_echo_io<R, W>(input: R, mut output: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut echo = RawEcho::default();
    let mut lines = BufReader::new(input).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        for frame in echo.answer(&line) {
            output.write_all(frame.as_bytes()).await?;
            output.write_all(b"\n").await?;
        }
        output.flush().await?;
    }
    Ok(())
}

/// Serves on the process's stdin/stdout.
pub async fn serve_raw_echo_stdio() -> std::io::Result<()> {
    serve_raw_echo_io(tokio::io::stdin(), tokio::io::stdout()).await
}

/// The HTTP flavour: `POST /mcp` answers as JSON, or as an SSE stream when a call sends
/// progress first; `initialize` hands out [`RAW_ECHO_SESSION`]. `DELETE /mcp` ends nothing.
pub fn raw_echo_router() -> axum::Router {
    let state = std::sync::Arc::new(std::sync::Mutex::new(RawEcho::default()));
    axum::Router::new()
        .route("/mcp", axum::routing::post(http_post).delete(|| async { StatusCode::OK }))
        .with_state(state)
}

async fn http_post(
    axum::extract::State(echo): axum::extract::State<std::sync::Arc<std::sync::Mutex<RawEcho>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let frames = echo.lock().map(|mut e| e.answer(&body)).unwrap_or_default();
    let initialize = body.contains(r#""initialize""#) && !headers.contains_key("mcp-session-id");
    let mut res = match frames.as_slice() {
        [] => StatusCode::ACCEPTED.into_response(),
        [one] => ([(header::CONTENT_TYPE, "application/json")], one.clone()).into_response(),
        many => {
            let events: String = many.iter().map(|f| format!("event: message\ndata: {f}\n\n")).collect();
            ([(header::CONTENT_TYPE, "text/event-stream")], events).into_response()
        }
    };
    if initialize && let Ok(v) = RAW_ECHO_SESSION.parse() {
        res.headers_mut().insert("mcp-session-id", v);
    }
    res
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_call_echoes_its_line_and_arguments_as_written() {
        let line = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"raw_echo","arguments":{"b":1.50,"a":"\u00e9"},"_meta":{"progressToken":"t"}}}"#;
        let mut echo = RawEcho::default();
        let frames = echo.answer(line);
        assert_eq!(frames.len(), 2);
        assert!(frames[0].contains(r#""progressToken":"t","progress":1.50"#), "{}", frames[0]);
        let expected = format!(
            r#"{{"jsonrpc":"2.0","id":7,"result":{{"content":[],"received":{},"arguments":{{"b":1.50,"a":"\u00e9"}},{RAW_ECHO_TAIL}}}}}"#,
            serde_json::to_string(line).unwrap()
        );
        assert_eq!(frames[1], expected);
        assert!(echo.answer(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).is_empty());
        assert!(echo.answer(r#"{"jsonrpc":"2.0","id":"x","method":"nope"}"#)[0].contains("-32601"));
        let hold = r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"raw_hold"}}"#;
        assert!(echo.answer(hold).is_empty());
        let seen = echo.answer(r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"raw_seen"}}"#);
        let v: serde_json::Value = serde_json::from_str(&seen[0]).unwrap();
        assert_eq!(v["result"]["lines"][0], line);
        assert_eq!(v["result"]["lines"][3], hold);
    }
}
