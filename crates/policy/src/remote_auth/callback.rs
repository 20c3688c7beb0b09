//! The loopback redirect target of the login: a one-shot HTTP listener on 127.0.0.1 that
//! waits for `/callback?code=…&state=…` and answers the browser with a short page.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The redirect URI's path.
pub(crate) const CALLBACK_PATH: &str = "/callback";
/// Largest request head read from the browser.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long one connection may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What the authorization server sent back through the browser.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Code(String),
    Denied { error: String, description: Option<String> },
}

/// The listener, bound before the authorization URL is built (so port 0 can be used).
pub(crate) struct Callback {
    listener: TcpListener,
    port: u16,
}

impl Callback {
    /// Binds `127.0.0.1:port` (0: any free port).
    pub(crate) async fn bind(port: u16) -> Result<Callback, String> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| format!("cannot listen on 127.0.0.1:{port} for the login callback: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        Ok(Callback { listener, port })
    }

    pub(crate) fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}{CALLBACK_PATH}", self.port)
    }

    /// Serves requests until one carries our `state` with a code or an error. Requests for
    /// other paths or with another `state` (a stale tab, a forged link) get an error page and
    /// the wait goes on; the caller bounds the whole wait.
    pub(crate) async fn wait(self, state: &str) -> Outcome {
        loop {
            let Ok((stream, _)) = self.listener.accept().await else {
                // E.g. out of file descriptors: don't spin; the caller's timeout ends the wait.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if let Some(outcome) = serve(stream, state).await {
                return outcome;
            }
        }
    }
}

async fn serve(mut stream: TcpStream, state: &str) -> Option<Outcome> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(Some(head)) => head,
        _ => return None,
    };
    let (status, page, outcome) = match judge(&head, state) {
        Ok(Outcome::Code(code)) => ("200 OK", "Login complete. You can close this window.", Some(Outcome::Code(code))),
        Ok(denied) => ("200 OK", "The login was refused. You can close this window.", Some(denied)),
        Err((status, page)) => (status, page, None),
    };
    let body = format!("<!doctype html><title>Apiary</title><p>{page}</p>\n");
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(READ_TIMEOUT, stream.write_all(answer.as_bytes())).await;
    let _ = stream.shutdown().await;
    outcome
}

async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return String::from_utf8(buf).ok();
        }
        if buf.len() > MAX_HEAD_BYTES {
            return None;
        }
    }
}

/// Decides what a request head means for the login waiting on `state`.
pub(crate) fn judge(head: &str, state: &str) -> Result<Outcome, (&'static str, &'static str)> {
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if method != "GET" || path != CALLBACK_PATH {
        return Err(("404 Not Found", "Not found."));
    }
    let mut code = None;
    let mut got_state = None;
    let mut error = None;
    let mut description = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "code" => code = Some(v.into_owned()),
            "state" => got_state = Some(v.into_owned()),
            "error" => error = Some(v.into_owned()),
            "error_description" => description = Some(v.chars().take(300).collect()),
            _ => {}
        }
    }
    if got_state.as_deref() != Some(state) {
        return Err(("400 Bad Request", "This login link is stale or forged (state mismatch)."));
    }
    match (code, error) {
        (_, Some(error)) => Ok(Outcome::Denied { error: error.chars().take(100).collect(), description }),
        (Some(code), None) if !code.is_empty() => Ok(Outcome::Code(code)),
        _ => Err(("400 Bad Request", "The callback carries neither a code nor an error.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(target: &str) -> String {
        format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    }

    #[test]
    fn judges_callbacks() {
        assert_eq!(judge(&head("/callback?state=s1&code=abc"), "s1"), Ok(Outcome::Code("abc".into())));
        assert_eq!(
            judge(&head("/callback?error=access_denied&error_description=no%20way&state=s1"), "s1"),
            Ok(Outcome::Denied { error: "access_denied".into(), description: Some("no way".into()) })
        );
        assert_eq!(judge(&head("/callback?state=other&code=abc"), "s1").unwrap_err().0, "400 Bad Request");
        assert_eq!(judge(&head("/callback?code=abc"), "s1").unwrap_err().0, "400 Bad Request");
        assert_eq!(judge(&head("/callback?state=s1"), "s1").unwrap_err().0, "400 Bad Request");
        assert_eq!(judge(&head("/favicon.ico"), "s1").unwrap_err().0, "404 Not Found");
        assert_eq!(judge("POST /callback?state=s1&code=a HTTP/1.1\r\n\r\n", "s1").unwrap_err().0, "404 Not Found");
    }

    #[tokio::test]
    async fn a_wrong_state_does_not_end_the_wait() {
        let cb = Callback::bind(0).await.unwrap();
        let uri = cb.redirect_uri();
        let waiter = tokio::spawn(async move { cb.wait("right").await });
        let client = reqwest::Client::new();
        let forged = client.get(format!("{uri}?state=wrong&code=x")).send().await.unwrap();
        assert_eq!(forged.status(), 400);
        let ok = client.get(format!("{uri}?state=right&code=good")).send().await.unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(waiter.await.unwrap(), Outcome::Code("good".into()));
    }
}
