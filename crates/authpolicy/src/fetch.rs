//! The seam to HTTP for `metadata.*.http`: the evaluator builds the call, a fetcher sends it.
//! [`ReqwestFetcher`] is the real one, with a timeout and a cap on the response body.
use std::future::Future;
use std::time::Duration;

use http::Method;
use serde_json::Value;

/// One metadata request, fully built (URL, headers incl. credentials and `Content-Type`, body).
#[derive(Clone)]
pub struct HttpCall {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl HttpCall {
    /// The value of header `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

// Header values and the body carry credentials (the client secret, the caller's token): never print them.
impl std::fmt::Debug for HttpCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpCall")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("header_names", &names)
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .finish()
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("metadata request failed: {0}")]
    Transport(String),
    #[error("metadata response is not valid JSON")]
    Json,
    #[error("metadata response larger than {0} bytes")]
    TooLarge(usize),
}

/// Why a CA bundle (`apiary gateway --issuer-ca`) cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    #[error("not PEM certificates: {0}")]
    NotPem(String),
    #[error("no certificate in it")]
    Empty,
}

/// The certificates of a PEM bundle, to trust beside the system's roots; at least one.
pub fn pem_roots(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, RootsError> {
    let roots = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| RootsError::NotPem(e.to_string()))?;
    if roots.is_empty() {
        return Err(RootsError::Empty);
    }
    Ok(roots)
}

/// Sends a metadata call and returns the response as Authorino does: whatever the status, the
/// body parsed as JSON when `Content-Type` says `application/json`, else its text as a string.
pub trait MetadataFetcher: Send + Sync {
    fn fetch(&self, call: &HttpCall) -> impl Future<Output = Result<Value, FetchError>> + Send;
}

/// The real fetcher.
#[derive(Debug, Clone)]
pub struct ReqwestFetcher {
    client: reqwest::Client,
    max_body: usize,
}

impl ReqwestFetcher {
    /// Default bounds: 10 s per call, 1 MiB of response.
    pub fn new() -> Result<Self, FetchError> {
        Self::with_extra_roots(Vec::new())
    }

    /// Default bounds, trusting `extra_roots` beside the system's roots.
    pub fn with_extra_roots(extra_roots: Vec<reqwest::Certificate>) -> Result<Self, FetchError> {
        Self::with_roots(Duration::from_secs(10), 1024 * 1024, extra_roots)
    }

    pub fn with_limits(timeout: Duration, max_body: usize) -> Result<Self, FetchError> {
        Self::with_roots(timeout, max_body, Vec::new())
    }

    /// As [`ReqwestFetcher::with_limits`], trusting `extra_roots` beside the system's roots (the
    /// CA of a private token endpoint).
    pub fn with_roots(
        timeout: Duration,
        max_body: usize,
        extra_roots: Vec<reqwest::Certificate>,
    ) -> Result<Self, FetchError> {
        let client = reqwest::Client::builder()
            .tls_certs_merge(extra_roots)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        Ok(ReqwestFetcher { client, max_body })
    }
}

impl MetadataFetcher for ReqwestFetcher {
    async fn fetch(&self, call: &HttpCall) -> Result<Value, FetchError> {
        let mut request = self.client.request(call.method.clone(), &call.url);
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &call.body {
            request = request.body(body.clone());
        }
        // Errors from reqwest may carry the URL but never headers or body.
        let transport = |e: reqwest::Error| FetchError::Transport(e.without_url().to_string());
        let mut response = request.send().await.map_err(transport)?;
        let json = response
            .headers()
            .get_all(http::header::CONTENT_TYPE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("application/json")));
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > self.max_body {
                return Err(FetchError::TooLarge(self.max_body));
            }
            body.extend_from_slice(&chunk);
        }
        if json {
            serde_json::from_slice(&body).map_err(|_| FetchError::Json)
        } else {
            Ok(Value::String(String::from_utf8_lossy(&body).into_owned()))
        }
    }
}

/// A shared fetcher fetches as the one it shares (tests keep a handle to count calls).
impl<T: MetadataFetcher> MetadataFetcher for std::sync::Arc<T> {
    fn fetch(&self, call: &HttpCall) -> impl Future<Output = Result<Value, FetchError>> + Send {
        T::fetch(self, call)
    }
}
