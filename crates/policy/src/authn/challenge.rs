//! What a refused caller is told: the `WWW-Authenticate` challenge (RFC 6750 + RFC 9728) and the
//! protected-resource metadata document it points to.

use http::HeaderValue;
use serde_json::{Value, json};

use super::error::AuthnError;

/// A quoted-string (RFC 9110 §5.6.4): quotes and backslashes escaped; anything but printable
/// ASCII dropped (RFC 6750 allows no more in its parameters).
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars().filter(|c| matches!(c, ' '..='~')) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `Bearer realm="…", resource_metadata="…", scope="…", error="invalid_token", error_description="…"`,
/// with each part present only when it applies (`error="insufficient_scope"` for a 403, whose
/// `scope` the caller passes as the required scopes).
pub(crate) fn challenge(
    issuer: &str,
    scopes: &[String],
    err: &AuthnError,
    resource_metadata: Option<&str>,
) -> HeaderValue {
    let mut params = vec![format!("realm={}", quoted(issuer))];
    if let Some(url) = resource_metadata {
        params.push(format!("resource_metadata={}", quoted(url)));
    }
    if !scopes.is_empty() {
        params.push(format!("scope={}", quoted(&scopes.join(" "))));
    }
    if let Some(code) = err.error_code() {
        params.push(format!("error=\"{code}\""));
        params.push(format!("error_description={}", quoted(err.description())));
    }
    let value = format!("Bearer {}", params.join(", "));
    // Cannot fail (printable ASCII only); the bare scheme would still be a valid challenge.
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

/// The RFC 9728 document for `resource`.
pub(crate) fn resource_metadata(resource: &str, issuer: &str, scopes: &[String], jwks_uri: Option<&str>) -> Value {
    let scopes: Vec<&str> =
        if scopes.is_empty() { vec!["openid"] } else { scopes.iter().map(String::as_str).collect() };
    let mut doc = json!({
        "resource": resource,
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
        "scopes_supported": scopes,
    });
    if let Some(uri) = jwks_uri {
        doc["jwks_uri"] = Value::String(uri.to_owned());
    }
    doc
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::authn::error::InvalidReason;

    #[test]
    fn missing_token_has_no_error_code() {
        let v = challenge("https://idp", &[], &AuthnError::Missing, Some("https://mcp/.well-known/x"));
        assert_eq!(v.to_str().unwrap(), r#"Bearer realm="https://idp", resource_metadata="https://mcp/.well-known/x""#);
    }

    #[test]
    fn invalid_token_has_code_description_and_scope() {
        let scopes = vec!["openid".to_owned(), "mcp:tools".to_owned()];
        let err = AuthnError::Invalid { reason: InvalidReason::Expired };
        let v = challenge("https://idp", &scopes, &err, None);
        assert_eq!(
            v.to_str().unwrap(),
            r#"Bearer realm="https://idp", scope="openid mcp:tools", error="invalid_token", error_description="token expired""#
        );
    }

    #[test]
    fn insufficient_scope_names_the_required_scopes() {
        let required = vec!["mcp:tools".to_owned()];
        let err = AuthnError::InsufficientScope { missing: "mcp:tools".to_owned() };
        let v = challenge("https://idp", &required, &err, Some("https://mcp/.well-known/x"));
        assert_eq!(
            v.to_str().unwrap(),
            r#"Bearer realm="https://idp", resource_metadata="https://mcp/.well-known/x", scope="mcp:tools", error="insufficient_scope", error_description="token lacks a required scope""#
        );
    }

    #[test]
    fn quotes_are_escaped_and_non_ascii_dropped() {
        let v = challenge("a\"b\\c\nï", &[], &AuthnError::Missing, None);
        assert_eq!(v.to_str().unwrap(), r#"Bearer realm="a\"b\\c""#);
    }

    #[test]
    fn metadata_defaults_scopes_to_openid() {
        let doc = resource_metadata("https://mcp/x", "https://idp", &[], None);
        assert_eq!(
            doc,
            json!({"resource": "https://mcp/x", "authorization_servers": ["https://idp"],
                   "bearer_methods_supported": ["header"], "scopes_supported": ["openid"]})
        );
        let doc = resource_metadata("r", "i", &["a".to_owned()], Some("https://idp/jwks"));
        assert_eq!(doc["scopes_supported"], json!(["a"]));
        assert_eq!(doc["jwks_uri"], "https://idp/jwks");
    }
}
