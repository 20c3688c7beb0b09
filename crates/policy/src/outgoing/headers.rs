//! Which headers the proxy may set on an upstream request. A configured header must not
//! change how the request is routed or framed, nor claim to be something a proxy adds
//! (ToolHive refuses the same list).

use http::HeaderName;

/// Why a configured header is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header {0:?} is not a valid header name")]
    Invalid(String),
    #[error(
        "header {0:?} cannot be configured: it is hop-by-hop, framing or routing information, or spoofable proxy metadata"
    )]
    Refused(String),
    #[error("header {name:?}: its value is not a valid header value")]
    BadValue { name: String },
}

/// Checks a configured header name.
pub fn check_name(name: &str) -> Result<HeaderName, HeaderError> {
    let parsed = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| HeaderError::Invalid(name.to_owned()))?;
    let n = parsed.as_str();
    let refused = matches!(
        n,
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
            | "forwarded"
            | "x-real-ip"
    ) || n.starts_with("proxy-")
        || n.starts_with("x-forwarded-");
    if refused { Err(HeaderError::Refused(name.to_owned())) } else { Ok(parsed) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_framing_and_spoofable_headers_are_refused() {
        for bad in [
            "Host",
            "Connection",
            "Transfer-Encoding",
            "Content-Length",
            "Proxy-Foo",
            "X-Forwarded-For",
            "Forwarded",
            "X-Real-IP",
            "TE",
        ] {
            assert!(matches!(check_name(bad), Err(HeaderError::Refused(_))), "{bad}");
        }
        assert!(matches!(check_name("bad header"), Err(HeaderError::Invalid(_))));
        assert_eq!(check_name("X-Tenant-ID").unwrap().as_str(), "x-tenant-id");
        assert!(check_name("Authorization").is_ok());
    }
}
