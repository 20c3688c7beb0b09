//! The one request head the egress proxy reads from a client: `CONNECT host:port` or an
//! absolute-form `METHOD http://host[:port]/path`, read under a hard size cap and parsed with
//! httparse. Everything after the head is spliced, not parsed.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Headers a head may carry.
const MAX_HEADERS: usize = 100;

/// What the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A tunnel: answer 200 and splice.
    Connect {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
    },
    /// A plain-HTTP request to forward: `head` is the rewritten origin-form head to send first.
    Forward {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// Port (80 when the URL has none).
        port: u16,
        /// The head to send upstream.
        head: Vec<u8>,
    },
}

/// A head that cannot be served; the status and a short reason go back to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason}")]
pub struct BadRequest {
    /// HTTP status to answer with.
    pub status: u16,
    /// Why.
    pub reason: &'static str,
}

fn bad(status: u16, reason: &'static str) -> BadRequest {
    BadRequest { status, reason }
}

/// Reads one head (at most `cap` bytes) and returns the request and whatever bytes followed it.
pub async fn read<R: AsyncRead + Unpin>(conn: &mut R, cap: usize) -> Result<(Request, Vec<u8>), BadRequest> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = conn.read(&mut chunk).await.map_err(|_| bad(400, "cannot read the request"))?;
        if n == 0 {
            return Err(bad(400, "connection closed before the request head ended"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(parsed) = parse(&buf)? {
            return Ok(parsed);
        }
        if buf.len() >= cap {
            return Err(bad(431, "request head too large"));
        }
    }
}

/// Parses a complete head from `buf`, or `None` when more bytes are needed.
pub fn parse(buf: &[u8]) -> Result<Option<(Request, Vec<u8>)>, BadRequest> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(bad(431, "too many headers")),
        Err(_) => return Err(bad(400, "malformed request head")),
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(bad(400, "malformed request line"));
    };
    let rest = buf[len..].to_vec();
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = split_authority(target, None)?;
        return Ok(Some((Request::Connect { host, port }, rest)));
    }
    let lower = target.get(..7).map(str::to_ascii_lowercase);
    if lower.as_deref() != Some("http://") {
        return Err(bad(400, "only CONNECT and absolute http:// URLs are proxied"));
    }
    let after = &target[7..];
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, path) = after.split_at(end);
    let (host, port) = split_authority(authority, Some(80))?;
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    let mut head = format!("{method} {path} HTTP/1.1\r\n").into_bytes();
    // The upstream is chosen by the URL, so Host says the same; hop-by-hop and proxy headers stay
    // here; one request per connection, so a second request cannot ride to another destination.
    head.extend_from_slice(format!("Host: {authority}\r\n").as_bytes());
    for h in req.headers.iter() {
        let skip = ["host", "connection", "proxy-connection", "proxy-authorization", "keep-alive"]
            .iter()
            .any(|n| h.name.eq_ignore_ascii_case(n));
        if !skip {
            head.extend_from_slice(h.name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(h.value);
            head.extend_from_slice(b"\r\n");
        }
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    Ok(Some((Request::Forward { host, port, head }, rest)))
}

/// `host:port`, `[v6]:port`, or (with a default port) `host` / `[v6]`.
fn split_authority(authority: &str, default_port: Option<u16>) -> Result<(String, u16), BadRequest> {
    if authority.contains('@') {
        return Err(bad(400, "credentials in the URL are not proxied"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, tail) = v6.split_once(']').ok_or_else(|| bad(400, "malformed IPv6 address"))?;
        (host, tail.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad(400, "invalid port"))?,
        None => default_port.ok_or_else(|| bad(400, "CONNECT needs host:port"))?,
    };
    if host.is_empty() {
        return Err(bad(400, "empty host"));
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn connect_heads_name_host_and_port() {
        let (r, rest) = parse(b"CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\nHELLO").unwrap().unwrap();
        assert_eq!(r, Request::Connect { host: "api.test".into(), port: 443 });
        assert_eq!(rest, b"HELLO");
        let (r, _) = parse(b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!(r, Request::Connect { host: "::1".into(), port: 8443 });
        assert_eq!(parse(b"CONNECT api.test HTTP/1.1\r\n\r\n").unwrap_err().status, 400);
        assert_eq!(parse(b"CONNECT api.test:0 HTTP/1.1\r\n\r\n").unwrap_err().status, 400);
    }

    #[test]
    fn absolute_form_is_rewritten_to_origin_form_with_the_url_host() {
        let head = b"GET http://Api.Test:8080/x?y=1 HTTP/1.1\r\nHost: evil.test\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n";
        let (r, _) = parse(head).unwrap().unwrap();
        let Request::Forward { host, port, head } = r else { panic!("not forward") };
        assert_eq!((host.as_str(), port), ("Api.Test", 8080));
        let text = String::from_utf8(head).unwrap();
        assert_eq!(text, "GET /x?y=1 HTTP/1.1\r\nHost: Api.Test:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n");
        let (r, _) = parse(b"GET http://a.test HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert!(matches!(r, Request::Forward { port: 80, .. }));
    }

    #[test]
    fn other_forms_are_refused() {
        assert_eq!(parse(b"GET /local HTTP/1.1\r\n\r\n").unwrap_err().status, 400);
        assert_eq!(parse(b"GET https://a.test/ HTTP/1.1\r\n\r\n").unwrap_err().status, 400);
        assert_eq!(parse(b"GET http://user:pw@a.test/ HTTP/1.1\r\n\r\n").unwrap_err().status, 400);
        assert_eq!(parse(b"\x00\x01garbage\r\n\r\n").unwrap_err().status, 400);
        assert!(parse(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a").unwrap().is_none());
    }

    #[tokio::test]
    async fn a_head_larger_than_the_cap_is_refused() {
        let mut big = b"GET http://a.test/ HTTP/1.1\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'a', 10_000));
        let err = read(&mut big.as_slice(), 4096).await.unwrap_err();
        assert_eq!(err.status, 431);
    }
}
