//! The readiness check of a started target: a whole MCP session over plain HTTP/1.1
//! (`initialize`, `notifications/initialized`, `tools/list`, `DELETE`), answered as JSON or as an
//! SSE stream, plainly or chunked. A target is ready when its `tools/list` names `echo`.
//! Written on std's `TcpStream` so xtask needs no HTTP client; every read is bounded in size
//! and time.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Largest answer read (a `tools/list` of the fixture is a few KiB).
const MAX_ANSWER: u64 = 4 * 1024 * 1024;
const PROTOCOL_VERSION: &str = "2025-11-25";

/// `http://host:port/path` split into the address to connect to and the request path.
#[derive(Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub authority: String,
    pub path: String,
}

pub fn parse_url(url: &str) -> Result<Endpoint> {
    let rest = url.strip_prefix("http://").with_context(|| format!("{url}: only http:// URLs"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() || !authority.contains(':') {
        bail!("{url}: expected http://host:port/path");
    }
    let path = if path.is_empty() { "/" } else { path };
    Ok(Endpoint { authority: authority.to_owned(), path: path.to_owned() })
}

/// One HTTP answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub session_id: Option<String>,
    pub body: String,
}

/// Runs one session against `url` and returns the tool names its `tools/list` gave.
pub fn tools_list(url: &str, timeout: Duration) -> Result<Vec<String>> {
    let endpoint = parse_url(url)?;
    let init = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"{PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{{"name":"xtask-bench","version":"0"}}}}}}"#
    );
    let answer = request(&endpoint, "POST", None, &init, timeout)?;
    if answer.status != 200 {
        bail!("initialize answered HTTP {}: {}", answer.status, first_chars(&answer.body));
    }
    message_with_id(&answer.body, 1).context("initialize")?;
    let session = answer.session_id;
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let answer = request(&endpoint, "POST", session.as_deref(), initialized, timeout)?;
    if !(200..300).contains(&answer.status) {
        bail!("notifications/initialized answered HTTP {}", answer.status);
    }
    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let answer = request(&endpoint, "POST", session.as_deref(), list, timeout)?;
    if answer.status != 200 {
        bail!("tools/list answered HTTP {}: {}", answer.status, first_chars(&answer.body));
    }
    let names = tool_names(&message_with_id(&answer.body, 2).context("tools/list")?)?;
    if session.is_some() {
        // Ends the session (a per-session child with it); the answer does not matter.
        let _ = request(&endpoint, "DELETE", session.as_deref(), "", timeout);
    }
    Ok(names)
}

fn request(endpoint: &Endpoint, method: &str, session: Option<&str>, body: &str, timeout: Duration) -> Result<Answer> {
    let mut stream =
        TcpStream::connect(&endpoint.authority).with_context(|| format!("cannot connect to {}", endpoint.authority))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json, text/event-stream\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        endpoint.path,
        endpoint.authority,
        body.len()
    );
    if let Some(id) = session {
        head.push_str(&format!("Mcp-Session-Id: {id}\r\nMcp-Protocol-Version: {PROTOCOL_VERSION}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    // Read until the answer is whole: some servers keep the connection open despite
    // `Connection: close`, so the end of the body, not the end of the stream, ends the read.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).context("reading the answer")?;
        raw.extend_from_slice(&buf[..n]);
        if let Some(answer) = parse_answer(&raw, n == 0)? {
            return Ok(answer);
        }
        if raw.len() as u64 > MAX_ANSWER {
            bail!("answer longer than {MAX_ANSWER} bytes");
        }
    }
}

/// Parses an HTTP/1.1 response read so far: `None` while it is not whole yet, an error if the
/// connection ended (`eof`) before it was.
pub fn parse_answer(raw: &[u8], eof: bool) -> Result<Option<Answer>> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        if eof {
            bail!("the connection ended before the end of the headers");
        }
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut body = &raw[split + 4..];
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut session_id = None;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "mcp-session-id" => session_id = Some(value.to_owned()),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "content-length" => length = value.parse::<usize>().ok(),
            _ => {}
        }
    }
    let decoded;
    if chunked {
        match dechunk(body)? {
            Some(whole) => decoded = whole,
            None if eof => bail!("the connection ended inside a chunked body"),
            None => return Ok(None),
        }
        body = &decoded;
    } else if let Some(n) = length {
        match body.get(..n) {
            Some(whole) => body = whole,
            None if eof => bail!("the connection ended before {n} body bytes"),
            None => return Ok(None),
        }
    } else if !eof {
        // Neither length nor chunks: the body ends with the connection.
        return Ok(None);
    }
    Ok(Some(Answer { status, session_id, body: String::from_utf8_lossy(body).into_owned() }))
}

/// Joins the chunks of a chunked body (extensions ignored, trailers dropped); `None` while the
/// last chunk has not arrived.
fn dechunk(mut raw: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    loop {
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
        let line = String::from_utf8_lossy(&raw[..end]);
        let hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(hex, 16).with_context(|| format!("bad chunk size {hex:?}"))?;
        raw = &raw[end + 2..];
        if size == 0 {
            return Ok(Some(out));
        }
        let Some(chunk) = raw.get(..size) else { return Ok(None) };
        out.extend_from_slice(chunk);
        let Some(rest) = raw.get(size + 2..) else { return Ok(None) };
        raw = rest;
    }
}

/// The JSON-RPC message with `id` in a body that is either one JSON message or an SSE stream
/// (`data:` lines, events separated by blank lines).
pub fn message_with_id(body: &str, id: u64) -> Result<Value> {
    let trimmed = body.trim_start();
    let candidates: Vec<String> = if trimmed.starts_with('{') {
        vec![trimmed.to_owned()]
    } else {
        let mut events = Vec::new();
        let mut data = String::new();
        for line in body.lines().chain([""]) {
            if let Some(rest) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            } else if line.trim().is_empty() && !data.is_empty() {
                events.push(std::mem::take(&mut data));
            }
        }
        events
    };
    for text in candidates {
        let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
        if message.get("id").and_then(Value::as_u64) == Some(id) {
            if let Some(error) = message.get("error") {
                bail!("JSON-RPC error {error}");
            }
            return Ok(message);
        }
    }
    bail!("no answer with id {id} in {}", first_chars(body))
}

fn tool_names(message: &Value) -> Result<Vec<String>> {
    let tools = message.pointer("/result/tools").and_then(Value::as_array).context("no result.tools")?;
    Ok(tools.iter().filter_map(|t| t.get("name").and_then(Value::as_str)).map(str::to_owned).collect())
}

fn first_chars(text: &str) -> String {
    text.chars().take(200).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    #[test]
    fn urls_split_into_authority_and_path() {
        let e = parse_url("http://127.0.0.1:8080/mcp").unwrap();
        assert_eq!(e, Endpoint { authority: "127.0.0.1:8080".into(), path: "/mcp".into() });
        assert_eq!(parse_url("http://h:1").unwrap().path, "/");
        assert!(parse_url("https://h:1/mcp").is_err());
        assert!(parse_url("http://nohost/mcp").is_err());
    }

    #[test]
    fn chunked_sse_answers_are_joined_and_the_matching_event_found() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nmcp-session-id: abc\r\n\
            Transfer-Encoding: chunked\r\n\r\n\
            1c\r\nevent: message\ndata: {\"jsonr\r\n\
            29\r\npc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[]}}\n\n\r\n0\r\n\r\n";
        // Whole once the last chunk is there, whether or not the connection ended.
        for cut in [40, 120, raw.len() - 3] {
            assert_eq!(parse_answer(&raw[..cut], false).unwrap(), None, "cut at {cut}");
            assert!(parse_answer(&raw[..cut], true).is_err(), "cut at {cut}");
        }
        let answer = parse_answer(raw, false).unwrap().unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.session_id.as_deref(), Some("abc"));
        let message = message_with_id(&answer.body, 2).unwrap();
        assert_eq!(message["result"]["tools"], serde_json::json!([]));
        assert!(message_with_id(&answer.body, 3).is_err());
    }

    #[test]
    fn json_answers_and_errors() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 44\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-1}}xxxxxxx";
        let answer = parse_answer(raw, false).unwrap().unwrap();
        assert_eq!(answer.session_id, None);
        let err = message_with_id(&answer.body, 1).unwrap_err().to_string();
        assert!(err.contains("JSON-RPC error"), "{err}");
        assert!(parse_answer(b"garbage", true).is_err());
        assert_eq!(parse_answer(b"HTTP/1.1 200 OK\r\n\r\nto the end", false).unwrap(), None);
        assert_eq!(parse_answer(b"HTTP/1.1 200 OK\r\n\r\nto the end", true).unwrap().unwrap().body, "to the end");
    }

    /// Reads one request: headers, then as many body bytes as its Content-Length says.
    fn read_request(stream: &mut TcpStream) -> String {
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).unwrap();
            raw.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&raw).into_owned();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if raw.len() >= end + 4 + length || n == 0 {
                    return text;
                }
            }
            assert!(n > 0, "request cut short");
        }
    }

    /// A tiny server answering the four requests of a session the way a Streamable HTTP server
    /// does (JSON, 202, SSE, 200), recording what it was sent.
    #[test]
    fn a_whole_session_lists_the_tools_and_ends_with_delete() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let server = thread::spawn(move || {
            let mut seen = Vec::new();
            for (i, stream) in listener.incoming().take(4).enumerate() {
                let mut stream = stream.unwrap();
                seen.push(read_request(&mut stream));
                let reply = match i {
                    0 => "HTTP/1.1 200 OK\r\nMcp-Session-Id: s1\r\nContent-Type: application/json\r\n\r\n\
                          {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}"
                        .to_owned(),
                    1 => "HTTP/1.1 202 Accepted\r\n\r\n".to_owned(),
                    2 => "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n\
                          data: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"echo\"},{\"name\":\"sleep\"}]}}\n\n"
                        .to_owned(),
                    _ => "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_owned(),
                };
                stream.write_all(reply.as_bytes()).unwrap();
            }
            seen
        });
        let names = tools_list(&url, Duration::from_secs(5)).unwrap();
        assert_eq!(names, ["echo", "sleep"]);
        let seen = server.join().unwrap();
        assert!(seen[0].starts_with("POST /mcp HTTP/1.1") && seen[0].contains("\"initialize\""));
        assert!(seen[2].contains("Mcp-Session-Id: s1") && seen[2].contains("tools/list"));
        assert!(seen[3].starts_with("DELETE /mcp"));
    }
}
