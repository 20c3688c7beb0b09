//! Finding the authorization server: the remote's 401 `WWW-Authenticate` → RFC 9728
//! protected-resource metadata → its first authorization server → RFC 8414 or OIDC metadata.

use serde::Deserialize;

use super::http::{checked_url, excerpt, read_capped};

/// What the remote told us about itself (RFC 9728).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ResourceHints {
    /// `authorization_servers[0]`.
    pub(crate) issuer: String,
    /// The metadata's `resource`, the RFC 8707 resource indicator to ask tokens for.
    pub(crate) resource: Option<String>,
    /// The challenge's `scope`, else the metadata's `scopes_supported`.
    pub(crate) scopes: Vec<String>,
}

/// The authorization server's endpoints (RFC 8414 / OIDC discovery).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct AsMetadata {
    #[serde(default)]
    pub(crate) issuer: Option<String>,
    pub(crate) authorization_endpoint: Option<String>,
    pub(crate) token_endpoint: Option<String>,
    pub(crate) registration_endpoint: Option<String>,
    #[serde(default)]
    pub(crate) code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// One auth-param of a `WWW-Authenticate` value (RFC 9110 §11.2): `name=token` or
/// `name="quoted \"string\""`, names compared case-insensitively.
pub(crate) fn auth_param(header: &str, name: &str) -> Option<String> {
    let bytes = header.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // Read a token (a scheme or a parameter name).
        let start = i;
        while i < bytes.len() && !matches!(bytes[i], b'=' | b',' | b' ' | b'\t') {
            i += 1;
        }
        let key = &header[start..i];
        let mut j = i;
        while j < bytes.len() && matches!(bytes[j], b' ' | b'\t') {
            j += 1;
        }
        if j < bytes.len() && bytes[j] == b'=' && !key.is_empty() {
            j += 1;
            while j < bytes.len() && matches!(bytes[j], b' ' | b'\t') {
                j += 1;
            }
            let (value, end) = if j < bytes.len() && bytes[j] == b'"' {
                let mut value = String::new();
                let mut k = j + 1;
                let mut closed = false;
                let mut chars = header[k..].char_indices();
                while let Some((off, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => {
                            k += off + 1;
                            closed = true;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                if !closed {
                    return None;
                }
                (value, k)
            } else {
                let vstart = j;
                while j < bytes.len() && !matches!(bytes[j], b',' | b' ' | b'\t') {
                    j += 1;
                }
                (header[vstart..j].to_string(), j)
            };
            if key.eq_ignore_ascii_case(name) {
                return Some(value);
            }
            i = end;
        } else {
            i = j.max(i);
        }
        while i < bytes.len() && matches!(bytes[i], b',' | b' ' | b'\t') {
            i += 1;
        }
    }
    None
}

/// Where RFC 9728 §3.1 puts the metadata of `resource` when no challenge names it:
/// `/.well-known/oauth-protected-resource` inserted before the path, then at the root.
pub(crate) fn default_resource_metadata_urls(resource: &url::Url) -> Vec<String> {
    let origin = resource.origin().ascii_serialization();
    let path = resource.path().trim_end_matches('/');
    let mut urls = Vec::new();
    if !path.is_empty() {
        urls.push(format!("{origin}/.well-known/oauth-protected-resource{path}"));
    }
    urls.push(format!("{origin}/.well-known/oauth-protected-resource"));
    urls
}

/// The metadata URLs to try for `issuer`, in order: RFC 8414 (path inserted), OIDC with the
/// path inserted, OIDC appended (what most providers, Keycloak among them, serve).
pub(crate) fn as_metadata_urls(issuer: &url::Url) -> Vec<String> {
    let origin = issuer.origin().ascii_serialization();
    let path = issuer.path().trim_end_matches('/');
    let mut urls = vec![format!("{origin}/.well-known/oauth-authorization-server{path}")];
    if path.is_empty() {
        urls.push(format!("{origin}/.well-known/openid-configuration"));
    } else {
        urls.push(format!("{origin}/.well-known/openid-configuration{path}"));
        urls.push(format!("{origin}{path}/.well-known/openid-configuration"));
    }
    urls
}

/// Asks `remote_url` (as an MCP client would, with `initialize`) and follows its 401 to the
/// protected-resource metadata.
pub(crate) async fn discover_resource(
    client: &reqwest::Client,
    remote_url: &str,
    insecure_allow_http: bool,
) -> Result<ResourceHints, String> {
    let remote = url::Url::parse(remote_url).map_err(|e| format!("the remote URL {remote_url:?} is not a URL: {e}"))?;
    let init = serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "apiary", "version": env!("CARGO_PKG_VERSION")}}});
    let res = client
        .post(remote.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json, text/event-stream")
        .body(init.to_string())
        .send()
        .await
        .map_err(|e| format!("cannot reach the remote {remote_url}: {}", super::http::chain(&e)))?;
    let status = res.status().as_u16();
    if status != 401 {
        return Err(format!(
            "the remote {remote_url} answered HTTP {status} without credentials, not 401: it asks for no login (configure the issuer to log in anyway)"
        ));
    }
    let challenges: Vec<String> = res
        .headers()
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    drop(res);
    let named = challenges.iter().find_map(|c| auth_param(c, "resource_metadata"));
    let challenge_scope = challenges.iter().find_map(|c| auth_param(c, "scope"));
    let candidates = match named {
        Some(u) => vec![u],
        None => default_resource_metadata_urls(&remote),
    };
    let mut last = String::new();
    for candidate in candidates {
        match fetch_resource_metadata(client, &candidate, insecure_allow_http).await {
            Ok(mut hints) => {
                if let Some(scope) = challenge_scope {
                    hints.scopes = scope.split_whitespace().map(str::to_string).collect();
                }
                return Ok(hints);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn fetch_resource_metadata(
    client: &reqwest::Client,
    url: &str,
    insecure_allow_http: bool,
) -> Result<ResourceHints, String> {
    #[derive(Deserialize)]
    struct Prm {
        resource: Option<String>,
        #[serde(default)]
        authorization_servers: Vec<String>,
        #[serde(default)]
        scopes_supported: Vec<String>,
    }
    let checked = checked_url("the protected-resource metadata URL", url, insecure_allow_http)?;
    let prm: Prm = get_json(client, checked, "the protected-resource metadata").await?;
    let Some(issuer) = prm.authorization_servers.into_iter().next() else {
        return Err(format!("the protected-resource metadata at {url} names no authorization_servers"));
    };
    Ok(ResourceHints { issuer, resource: prm.resource, scopes: prm.scopes_supported })
}

/// The authorization server metadata of `issuer`, whose `issuer` must be `issuer` itself
/// (RFC 8414 §3.3: a document naming another issuer is not its metadata).
pub(crate) async fn fetch_as_metadata(
    client: &reqwest::Client,
    issuer: &str,
    insecure_allow_http: bool,
) -> Result<AsMetadata, String> {
    let parsed = checked_url("the issuer", issuer, insecure_allow_http)?;
    let mut tried = Vec::new();
    for candidate in as_metadata_urls(&parsed) {
        let url = checked_url("the metadata URL", &candidate, insecure_allow_http)?;
        match get_json::<AsMetadata>(client, url, "the authorization server metadata").await {
            Ok(meta) => {
                let named = meta.issuer.as_deref().unwrap_or_default();
                if named.trim_end_matches('/') != issuer.trim_end_matches('/') {
                    return Err(format!("the metadata at {candidate} names the issuer {named:?}, not {issuer:?}"));
                }
                return Ok(meta);
            }
            Err(e) => tried.push(e),
        }
    }
    Err(format!("no authorization server metadata for {issuer}: {}", tried.join("; ")))
}

async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: url::Url,
    what: &str,
) -> Result<T, String> {
    let shown = url.to_string();
    let res = client
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("cannot fetch {what} at {shown}: {}", super::http::chain(&e)))?;
    let status = res.status().as_u16();
    let body = read_capped(res).await.map_err(|e| format!("{what} at {shown}: {e}"))?;
    if status != 200 {
        return Err(format!("{what} at {shown}: HTTP {status}"));
    }
    serde_json::from_slice(&body)
        .map_err(|e| format!("{what} at {shown} is not valid JSON metadata ({e}): {}", excerpt(&body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_params_quoted_and_bare() {
        let h = r#"Bearer realm="mcp", error="invalid_token", resource_metadata="https://r/.well-known/oauth-protected-resource/mcp", scope="a b""#;
        assert_eq!(
            auth_param(h, "resource_metadata").as_deref(),
            Some("https://r/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(auth_param(h, "scope").as_deref(), Some("a b"));
        assert_eq!(auth_param(h, "REALM").as_deref(), Some("mcp"));
        assert_eq!(
            auth_param("Bearer resource_metadata=https://x/y, scope=s", "resource_metadata").as_deref(),
            Some("https://x/y")
        );
        assert_eq!(auth_param(r#"Bearer realm="a\"b""#, "realm").as_deref(), Some("a\"b"));
        assert_eq!(auth_param("Bearer", "realm"), None);
        assert_eq!(auth_param(r#"Bearer realm="open"#, "realm"), None);
        // A name inside a quoted value is not a parameter.
        assert_eq!(auth_param(r#"Bearer realm="scope=x""#, "scope"), None);
    }

    #[test]
    fn well_known_urls() {
        let u = url::Url::parse("https://idp.example/realms/mcp").unwrap();
        assert_eq!(
            as_metadata_urls(&u),
            vec![
                "https://idp.example/.well-known/oauth-authorization-server/realms/mcp",
                "https://idp.example/.well-known/openid-configuration/realms/mcp",
                "https://idp.example/realms/mcp/.well-known/openid-configuration",
            ]
        );
        let root = url::Url::parse("https://idp.example/").unwrap();
        assert_eq!(
            as_metadata_urls(&root),
            vec![
                "https://idp.example/.well-known/oauth-authorization-server",
                "https://idp.example/.well-known/openid-configuration"
            ]
        );
        let r = url::Url::parse("https://mcp.example/v1/mcp").unwrap();
        assert_eq!(
            default_resource_metadata_urls(&r),
            vec![
                "https://mcp.example/.well-known/oauth-protected-resource/v1/mcp",
                "https://mcp.example/.well-known/oauth-protected-resource"
            ]
        );
    }
}
