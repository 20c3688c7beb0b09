//! The one way authn talks to the issuer: a reqwest client that never follows redirects, has a
//! timeout, and reads at most a bounded number of bytes of any answer.

use std::time::Duration;

use http::HeaderMap;

/// Why a fetch from the issuer failed. Kept for logs only; never shown to callers.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    #[error("HTTP status {0}")]
    Status(http::StatusCode),
    #[error("answer larger than {0} bytes")]
    TooLarge(usize),
    #[error("answer is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// A 2xx answer, its body read in full (within the bound).
pub(crate) struct Fetched {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// The client used for discovery, JWKS and introspection; `extra_roots` are trusted beside the
/// system's roots.
pub(crate) fn client(
    timeout: Duration,
    extra_roots: &[reqwest::Certificate],
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .tls_certs_merge(extra_roots.iter().cloned())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
}

/// Sends `request` and reads its 2xx answer, refusing bodies over `max_bytes`.
pub(crate) async fn send(request: reqwest::RequestBuilder, max_bytes: usize) -> Result<Fetched, FetchError> {
    let mut response = request.send().await?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Status(status));
    }
    if response.content_length().is_some_and(|n| n > max_bytes as u64) {
        return Err(FetchError::TooLarge(max_bytes));
    }
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max_bytes {
            return Err(FetchError::TooLarge(max_bytes));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fetched { headers, body })
}
