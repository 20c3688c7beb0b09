//! Edge checks made before anything else reads a request: Host and Origin against DNS
//! rebinding, the methods each route allows, Content-Type and Accept.

use axum::http::{HeaderMap, header};

use crate::answer::Refusal;

/// What the edge knows about where it listens and whom it trusts.
#[derive(Debug, Clone)]
pub struct EdgePolicy {
    /// The Host header is checked only on a loopback bind.
    pub check_host: bool,
    /// Extra allowed hosts (the configured listen host).
    pub extra_hosts: Vec<String>,
    /// Extra allowed origins, lower-cased `scheme://host[:port]`.
    pub allowed_origins: Vec<String>,
}

fn is_loopback_host(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

/// Splits `host[:port]` (with `[v6]` brackets kept) and lower-cases the host.
fn host_part(authority: &str) -> String {
    let a = authority.trim();
    let host = if let Some(end) = a.strip_prefix('[').and_then(|r| r.find(']')) {
        &a[..end + 2]
    } else {
        a.rsplit_once(':').map_or(a, |(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { a })
    };
    host.to_ascii_lowercase()
}

impl EdgePolicy {
    /// Host and Origin (bad-input.md, row 6). Runs first on every MCP route.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.check_host {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).map(host_part);
            match host {
                Some(h) if is_loopback_host(&h) || self.extra_hosts.iter().any(|e| e.eq_ignore_ascii_case(&h)) => {}
                // HTTP/1.0 without Host, or HTTP/2 (authority): let it through.
                None => {}
                Some(_) => return Err(Refusal::HostNotAllowed),
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().map_err(|_| Refusal::OriginNotAllowed)?.trim().to_ascii_lowercase();
            if !self.origin_allowed(&origin) {
                return Err(Refusal::OriginNotAllowed);
            }
        }
        Ok(())
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        if self.allowed_origins.iter().any(|o| o == origin) {
            return true;
        }
        let Some((scheme, rest)) = origin.split_once("://") else {
            return false;
        };
        (scheme == "http" || scheme == "https") && !rest.contains('/') && is_loopback_host(&host_part(rest))
    }
}

/// The header checks of every POST, in the order bad-input.md fixes: a declared length
/// over `max` (413, before any of the body is read), then Content-Type (415).
pub fn check_post_headers(headers: &HeaderMap, max: usize) -> Result<(), Refusal> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Refusal::BodyTooLarge { limit: max });
    }
    check_content_type(headers)
}

/// Reads a body, refusing it as soon as it runs past `max` bytes (a chunked body has no
/// declared length): no request ever buffers more than the cap (row 3).
pub async fn read_body(body: axum::body::Body, max: usize) -> Result<bytes::Bytes, Refusal> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    // A body that comes in one chunk (the usual small POST) is kept as it came, not copied.
    let mut first: Option<bytes::Bytes> = None;
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Refusal::invalid("the request body could not be read"))?;
        let held = first.as_ref().map_or(0, bytes::Bytes::len) + buf.len();
        if held + chunk.len() > max {
            return Err(Refusal::BodyTooLarge { limit: max });
        }
        if first.is_none() && buf.is_empty() {
            first = Some(chunk);
            continue;
        }
        if let Some(f) = first.take() {
            buf.reserve(f.len() + chunk.len());
            buf.extend_from_slice(&f);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

/// `application/json`, with or without a UTF-8 charset (bad-input.md, row 5).
pub fn check_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return Err(Refusal::UnsupportedMediaType);
    };
    let mut parts = ct.split(';');
    let essence = parts.next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(Refusal::UnsupportedMediaType);
    }
    for p in parts {
        if let Some((k, v)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("charset")
        {
            let v = v.trim().trim_matches('"');
            if !v.eq_ignore_ascii_case("utf-8") && !v.eq_ignore_ascii_case("utf8") {
                return Err(Refusal::UnsupportedMediaType);
            }
        }
    }
    Ok(())
}

/// Which response types a client admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepts {
    pub json: bool,
    pub sse: bool,
    /// `text/event-stream` named outright, not only through a wildcard: then a POST is
    /// answered as SSE. `*/*` alone (curl's default) gets JSON.
    pub sse_named: bool,
}

/// Reads `Accept` (RFC 9110 §12.5.1: wildcards, `q=0` excludes). A missing header
/// means JSON only, and is never refused (names.md §5). Runs on every POST: it reads the
/// values in place (no list of them, no lower-cased copy of each range).
pub fn accepts(headers: &HeaderMap) -> Accepts {
    let mut values = headers.get_all(header::ACCEPT).iter().peekable();
    if values.peek().is_none() {
        return Accepts { json: true, sse: false, sse_named: false };
    }
    let mut out = Accepts { json: false, sse: false, sse_named: false };
    for v in values {
        let Ok(text) = v.to_str() else { continue };
        for item in text.split(',') {
            let mut parts = item.split(';');
            let range = parts.next().unwrap_or("").trim();
            let excluded = parts.any(|p| {
                p.split_once('=')
                    .is_some_and(|(k, v)| k.trim() == "q" && v.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
            });
            if excluded {
                continue;
            }
            let is = |name: &str| range.eq_ignore_ascii_case(name);
            if is("*/*") {
                out.json = true;
                out.sse = true;
            } else if is("application/*") || is("application/json") {
                out.json = true;
            } else if is("text/*") {
                out.sse = true;
            } else if is("text/event-stream") {
                out.sse = true;
                out.sse_named = true;
            }
        }
    }
    out
}

/// For a GET stream: a missing Accept, `*/*` or `text/*` pass (row 10).
pub fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).is_none() || accepts(headers).sse
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn policy() -> EdgePolicy {
        EdgePolicy { check_host: true, extra_hosts: vec![], allowed_origins: vec!["https://app.example".into()] }
    }

    #[test]
    fn hosts_and_origins() {
        let p = policy();
        assert!(p.check(&headers(&[("host", "127.0.0.1:8080")])).is_ok());
        assert!(p.check(&headers(&[("host", "LOCALHOST")])).is_ok());
        assert!(p.check(&headers(&[("host", "[::1]:9")])).is_ok());
        assert!(matches!(p.check(&headers(&[("host", "evil.example.com")])), Err(Refusal::HostNotAllowed)));
        assert!(p.check(&headers(&[("host", "localhost"), ("origin", "http://127.0.0.1:5173")])).is_ok());
        assert!(p.check(&headers(&[("host", "localhost"), ("origin", "HTTPS://App.Example")])).is_ok());
        assert!(matches!(
            p.check(&headers(&[("host", "localhost"), ("origin", "https://evil.example")])),
            Err(Refusal::OriginNotAllowed)
        ));
        assert!(matches!(
            p.check(&headers(&[("host", "localhost"), ("origin", "null")])),
            Err(Refusal::OriginNotAllowed)
        ));
    }

    #[test]
    fn content_types() {
        assert!(check_content_type(&headers(&[("content-type", "application/json")])).is_ok());
        assert!(check_content_type(&headers(&[("content-type", "Application/JSON; charset=UTF-8")])).is_ok());
        for bad in ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin1"] {
            assert!(check_content_type(&headers(&[("content-type", bad)])).is_err(), "{bad}");
        }
        assert!(check_content_type(&HeaderMap::new()).is_err());
    }

    /// One chunk or many, the body is the same bytes; past the cap it is refused.
    #[tokio::test]
    async fn bodies_are_read_whole_and_capped() {
        let one = axum::body::Body::from("{\"a\":1}");
        assert_eq!(read_body(one, 100).await.unwrap(), bytes::Bytes::from_static(b"{\"a\":1}"));
        let chunks = || {
            let parts: Vec<Result<&'static str, std::io::Error>> = vec![Ok("{\"a\""), Ok(":"), Ok("12}")];
            axum::body::Body::from_stream(futures::stream::iter(parts))
        };
        assert_eq!(read_body(chunks(), 100).await.unwrap(), bytes::Bytes::from_static(b"{\"a\":12}"));
        assert_eq!(read_body(chunks(), 8).await.unwrap().len(), 8);
        assert!(matches!(read_body(chunks(), 7).await, Err(Refusal::BodyTooLarge { limit: 7 })));
        assert!(matches!(read_body(chunks(), 4).await, Err(Refusal::BodyTooLarge { limit: 4 })));
        assert_eq!(read_body(axum::body::Body::empty(), 0).await.unwrap(), bytes::Bytes::new());
    }

    #[test]
    fn accept_ranges() {
        assert_eq!(accepts(&HeaderMap::new()), Accepts { json: true, sse: false, sse_named: false });
        assert_eq!(
            accepts(&headers(&[("accept", "application/json, text/event-stream")])),
            Accepts { json: true, sse: true, sse_named: true }
        );
        assert_eq!(
            accepts(&headers(&[("accept", "text/html")])),
            Accepts { json: false, sse: false, sse_named: false }
        );
        assert_eq!(accepts(&headers(&[("accept", "*/*")])), Accepts { json: true, sse: true, sse_named: false });
        assert_eq!(
            accepts(&headers(&[("accept", "text/event-stream;q=0, application/json")])),
            Accepts { json: true, sse: false, sse_named: false }
        );
        // Media ranges are case-insensitive; several Accept lines add up.
        assert_eq!(
            accepts(&headers(&[("accept", "Application/JSON"), ("accept", " TEXT/Event-Stream ; q=0.5")])),
            Accepts { json: true, sse: true, sse_named: true }
        );
        assert_eq!(
            accepts(&headers(&[("accept", "text/*;q=0"), ("accept", "application/*")])),
            Accepts { json: true, sse: false, sse_named: false }
        );
    }
}
