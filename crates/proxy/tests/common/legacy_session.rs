//! A legacy (2025-11-25 and earlier) client session spoken by hand, for the tests of the
//! bridges to 2026-07-28-only servers: `initialize`, then POSTs with the session's headers,
//! and the JSON or SSE answers read frame by frame.

use std::time::Duration;

use serde_json::{Value, json};

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap()
}

/// The JSON-RPC frames of an SSE body read so far.
pub fn sse_frames(text: &str) -> Vec<Value> {
    text.lines().filter_map(|l| l.strip_prefix("data:")).filter_map(|d| serde_json::from_str(d.trim()).ok()).collect()
}

/// A legacy session: its id and revision.
pub struct Session {
    pub url: String,
    pub id: String,
    pub revision: String,
}

impl Session {
    /// `initialize` with `capabilities`, then `notifications/initialized`.
    pub async fn open(url: &str, revision: &str, capabilities: Value) -> (Session, Value) {
        let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":revision,"capabilities":capabilities,
            "clientInfo":{"name":"bridge-test","version":"1"}}});
        let res = client()
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(init.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let id = res.headers().get("mcp-session-id").expect("a session").to_str().unwrap().to_owned();
        let v = body_frame(res).await;
        let session = Session { url: url.to_owned(), id, revision: revision.to_owned() };
        let res = session.post(&json!({"jsonrpc":"2.0","method":"notifications/initialized"})).await;
        assert_eq!(res.status(), 202);
        (session, v)
    }

    /// The session's GET stream.
    pub async fn get(&self) -> reqwest::Response {
        client()
            .get(&self.url)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", &self.revision)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, body: &Value) -> reqwest::Response {
        client()
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", &self.id)
            .header("mcp-protocol-version", &self.revision)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// One request; its answer (from JSON or the SSE stream).
    pub async fn request(&self, id: i64, method: &str, params: Value) -> Value {
        let res = self.post(&json!({"jsonrpc":"2.0","id":id,"method":method,"params":params})).await;
        assert_eq!(res.status(), 200, "{method}");
        body_frame(res).await
    }
}

/// The answer in a JSON body, or the last frame of an SSE one.
pub async fn body_frame(res: reqwest::Response) -> Value {
    let sse = res.headers().get("content-type").is_some_and(|c| c.to_str().unwrap().starts_with("text/event-stream"));
    let text = res.text().await.unwrap();
    if sse {
        sse_frames(&text).into_iter().rev().find(|f| f.get("id").is_some()).unwrap_or_else(|| panic!("{text}"))
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"))
    }
}

/// Reads the SSE answer `res` until a frame matches `want`; returns it.
pub async fn next_frame(
    res: &mut reqwest::Response,
    text: &mut String,
    seen: &mut usize,
    want: impl Fn(&Value) -> bool,
) -> Value {
    loop {
        let frames = sse_frames(text);
        for f in frames.iter().skip(*seen) {
            *seen += 1;
            if want(f) {
                return f.clone();
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(30), res.chunk()).await;
        let chunk = chunk.unwrap_or_else(|_| panic!("nothing in time; got {text}")).unwrap();
        let chunk = chunk.unwrap_or_else(|| panic!("the stream ended; got {text}"));
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}
