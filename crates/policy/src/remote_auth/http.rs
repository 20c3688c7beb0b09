//! The HTTP plumbing shared by every step of the remote login: one bounded client, capped
//! answer bodies, URL checks (HTTPS unless allowed otherwise) and error text without secrets.

use std::time::Duration;

use futures::StreamExt;

/// Largest answer read from any endpoint (metadata, registration, token).
pub(crate) const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// A client that never follows redirects (a token request must not be re-sent elsewhere)
/// and never waits long.
pub(crate) fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e)))
}

/// Parses `raw` and refuses plain HTTP unless `insecure_allow_http` (tests, loopback set-ups).
pub(crate) fn checked_url(what: &str, raw: &str, insecure_allow_http: bool) -> Result<url::Url, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("{what} {raw:?} is not a URL: {e}"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if insecure_allow_http => Ok(url),
        "http" => Err(format!("{what} {raw:?} is plain HTTP (allowed only with insecure_allow_http)")),
        other => Err(format!("{what} {raw:?} has the unsupported scheme {other:?}")),
    }
}

/// Reads at most [`MAX_ANSWER_BYTES`] of an answer.
pub(crate) async fn read_capped(res: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut stream = res.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| chain(&e))?;
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!("the answer exceeds {MAX_ANSWER_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its causes on one line, cut to a readable length. Request errors name the
/// URL, never a form body, so no token or secret ends up here.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        text = format!("{text}: {s}");
        src = s.source();
    }
    text.chars().take(300).collect()
}

/// A short, printable excerpt of an answer body for error messages.
pub(crate) fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(200).filter(|c| !c.is_control()).collect()
}
