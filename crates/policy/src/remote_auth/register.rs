//! RFC 7591 dynamic client registration, used when no client id is configured: the proxy
//! registers itself as a public client with the loopback redirect URI.

use serde::Deserialize;

use super::http::{chain, excerpt, read_capped};

/// The client the authorization server registered.
pub(crate) struct Registered {
    pub(crate) client_id: String,
    pub(crate) client_secret: Option<String>,
    pub(crate) token_endpoint_auth_method: Option<String>,
}

/// Registers a client for the authorization-code grant at `endpoint`.
pub(crate) async fn register(
    client: &reqwest::Client,
    endpoint: &url::Url,
    redirect_uri: &str,
    scopes: &[String],
) -> Result<Registered, String> {
    let mut request = serde_json::json!({
        "client_name": "Apiary",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    });
    if !scopes.is_empty() {
        request["scope"] = serde_json::Value::String(scopes.join(" "));
    }
    let res = client
        .post(endpoint.clone())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(request.to_string())
        .send()
        .await
        .map_err(|e| format!("cannot reach the registration endpoint {endpoint}: {}", chain(&e)))?;
    let status = res.status().as_u16();
    let body = read_capped(res).await.map_err(|e| format!("the registration endpoint's answer: {e}"))?;
    if !(200..300).contains(&status) {
        #[derive(Deserialize)]
        struct OAuthError {
            error: String,
            error_description: Option<String>,
        }
        return Err(match serde_json::from_slice::<OAuthError>(&body) {
            Ok(e) => format!(
                "{endpoint} refused the registration (HTTP {status}): {}{}",
                e.error.chars().take(100).collect::<String>(),
                e.error_description
                    .map(|d| format!(" ({})", d.chars().take(300).collect::<String>()))
                    .unwrap_or_default()
            ),
            Err(_) => format!("{endpoint} answered HTTP {status}: {}", excerpt(&body)),
        });
    }
    #[derive(Deserialize)]
    struct Answer {
        client_id: String,
        client_secret: Option<String>,
        token_endpoint_auth_method: Option<String>,
    }
    // The body may hold a secret: a parse error names only the position.
    let answer: Answer = serde_json::from_slice(&body)
        .map_err(|e| format!("the registration answer is not a client (line {}, column {})", e.line(), e.column()))?;
    if answer.client_id.is_empty() {
        return Err("the registration answer has an empty client_id".into());
    }
    Ok(Registered {
        client_id: answer.client_id,
        client_secret: answer.client_secret.filter(|s| !s.is_empty()),
        token_endpoint_auth_method: answer.token_endpoint_auth_method,
    })
}
