//! The token endpoint: the authorization-code and refresh grants, client authentication,
//! and the retry policy that tells a transient failure (network, 5xx, 429) from a refusal.

use std::time::Duration;

use base64::Engine;
use serde::Deserialize;

use super::http::{chain, excerpt, read_capped};

/// Lifetime assumed when the token endpoint does not say (`expires_in` is optional).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// The longest lifetime believed (a larger `expires_in` is cut to it, and cannot overflow).
const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);
/// The longest single wait between two attempts, whatever `Retry-After` asks.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How the client proves itself at the token endpoint.
#[derive(Clone)]
pub(crate) enum ClientAuth {
    /// A public client: `client_id` in the form.
    None,
    /// RFC 6749 §2.3.1 HTTP Basic (both parts form-encoded first).
    Basic(String),
    /// `client_id` and `client_secret` in the form.
    Post(String),
}

/// Everything needed to call the token endpoint.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) url: String,
    pub(crate) client_id: String,
    pub(crate) auth: ClientAuth,
    /// RFC 8707 resource indicator, sent with every grant.
    pub(crate) resource: Option<String>,
}

impl ClientAuth {
    /// The RFC 7591 name of this method.
    pub(crate) fn method(&self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Basic(_) => "client_secret_basic",
            ClientAuth::Post(_) => "client_secret_post",
        }
    }

    /// The method named `method` (as [`ClientAuth::method`] gives it), with `secret`.
    pub(crate) fn from_method(client_id: &str, method: &str, secret: Option<&str>) -> Result<ClientAuth, String> {
        match (method, secret) {
            ("none", _) => Ok(ClientAuth::None),
            ("client_secret_post", Some(s)) => Ok(ClientAuth::Post(s.to_string())),
            ("client_secret_basic", Some(s)) => {
                Ok(ClientAuth::choose(client_id, Some(s), Some(&["client_secret_basic".to_string()])))
            }
            ("client_secret_post" | "client_secret_basic", None) => {
                Err(format!("the client authenticates with {method} but no client secret is configured"))
            }
            (other, _) => Err(format!("unknown client authentication method {other:?}")),
        }
    }

    /// Basic unless the server lists only `client_secret_post` (or the registration said so).
    pub(crate) fn choose(client_id: &str, secret: Option<&str>, methods: Option<&[String]>) -> ClientAuth {
        let Some(secret) = secret else { return ClientAuth::None };
        let post_only = methods.is_some_and(|m| {
            m.iter().any(|x| x == "client_secret_post") && !m.iter().any(|x| x == "client_secret_basic")
        });
        if post_only {
            return ClientAuth::Post(secret.to_string());
        }
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        ClientAuth::Basic(base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            enc(client_id),
            enc(secret)
        )))
    }
}

/// A successful token answer. No `Debug`: it holds tokens.
pub(crate) struct Tokens {
    pub(crate) access_token: String,
    pub(crate) refresh_token: Option<String>,
    pub(crate) lifetime: Duration,
}

/// Why one token request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Worth another try: unreachable, timed out, 5xx, 429 (with its `Retry-After`, if any).
    Transient { detail: String, retry_after: Option<Duration> },
    /// An OAuth error answer (`invalid_grant`, `invalid_client`, …): retrying cannot help.
    Refused { status: u16, error: String, description: Option<String> },
    /// A success status with an unusable body, or another final status.
    Invalid(String),
}

/// Bounded exponential backoff for transient failures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retry {
    /// Tries in all (at least 1).
    pub(crate) attempts: u32,
    /// The first wait; doubled each time, at most [`MAX_BACKOFF`].
    pub(crate) base: Duration,
}

impl Retry {
    pub(crate) fn delay(&self, failed_attempts: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self.base.saturating_mul(2u32.saturating_pow(failed_attempts.saturating_sub(1)));
        retry_after.unwrap_or(exp).min(MAX_BACKOFF)
    }

    /// Runs `call` until it succeeds, fails for good, or the attempts are used up (then the
    /// last transient failure is returned).
    pub(crate) async fn run<F, Fut>(&self, mut call: F) -> Result<Tokens, Failure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Tokens, Failure>>,
    {
        let attempts = self.attempts.max(1);
        let mut n = 0;
        loop {
            n += 1;
            match call().await {
                Err(Failure::Transient { detail, retry_after }) if n < attempts => {
                    tracing::warn!(attempt = n, of = attempts, %detail, "remote auth: token request failed, retrying");
                    tokio::time::sleep(self.delay(n, retry_after)).await;
                }
                other => return other,
            }
        }
    }
}

impl Endpoint {
    /// Redeems an authorization code (with its PKCE verifier).
    pub(crate) async fn exchange_code(
        &self,
        client: &reqwest::Client,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<Tokens, Failure> {
        let form = self.form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ]);
        self.post(client, form).await
    }

    /// Uses a refresh token.
    pub(crate) async fn refresh(&self, client: &reqwest::Client, refresh_token: &str) -> Result<Tokens, Failure> {
        let form = self.form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]);
        self.post(client, form).await
    }

    /// The grant's form plus the client and resource parameters (a plain function: the
    /// serializer is not `Send`, so it must not live across an await).
    fn form(&self, grant: &[(&str, &str)]) -> String {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.extend_pairs(grant);
        match &self.auth {
            ClientAuth::None => {
                form.append_pair("client_id", &self.client_id);
            }
            ClientAuth::Post(secret) => {
                form.append_pair("client_id", &self.client_id).append_pair("client_secret", secret);
            }
            ClientAuth::Basic(_) => {}
        }
        if let Some(r) = &self.resource {
            form.append_pair("resource", r);
        }
        form.finish()
    }

    async fn post(&self, client: &reqwest::Client, form: String) -> Result<Tokens, Failure> {
        let mut req = client
            .post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json");
        if let ClientAuth::Basic(b) = &self.auth {
            req = req.header(http::header::AUTHORIZATION, format!("Basic {b}"));
        }
        let res = req.body(form).send().await.map_err(|e| Failure::Transient {
            detail: format!("cannot reach the token endpoint {}: {}", self.url, chain(&e)),
            retry_after: None,
        })?;
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_capped(res).await.map_err(|e| Failure::Transient {
            detail: format!("reading the token endpoint's answer: {e}"),
            retry_after: None,
        })?;
        classify(status, &body, retry_after)
    }
}

/// Turns one token endpoint answer into tokens or a [`Failure`].
pub(crate) fn classify(status: u16, body: &[u8], retry_after: Option<Duration>) -> Result<Tokens, Failure> {
    if status == 429 || status >= 500 {
        return Err(Failure::Transient { detail: format!("the token endpoint answered HTTP {status}"), retry_after });
    }
    if !(200..300).contains(&status) {
        #[derive(Deserialize)]
        struct OAuthError {
            error: String,
            error_description: Option<String>,
        }
        return Err(match serde_json::from_slice::<OAuthError>(body) {
            Ok(e) => Failure::Refused {
                status,
                error: e.error.chars().take(100).collect(),
                description: e.error_description.map(|d| d.chars().take(300).collect()),
            },
            Err(_) => Failure::Invalid(format!("the token endpoint answered HTTP {status}: {}", excerpt(body))),
        });
    }
    #[derive(Deserialize)]
    struct Answer {
        access_token: String,
        token_type: Option<String>,
        expires_in: Option<u64>,
        refresh_token: Option<String>,
    }
    // The body holds tokens: the parse error names only the position, never the text.
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        Failure::Invalid(format!("the token answer is not a token response (line {}, column {})", e.line(), e.column()))
    })?;
    if answer.access_token.is_empty() {
        return Err(Failure::Invalid("the token answer has an empty access_token".into()));
    }
    if let Some(t) = &answer.token_type
        && !t.eq_ignore_ascii_case("bearer")
    {
        return Err(Failure::Invalid(format!("the token type is {t:?}, not Bearer")));
    }
    Ok(Tokens {
        access_token: answer.access_token,
        refresh_token: answer.refresh_token.filter(|r| !r.is_empty()),
        lifetime: answer.expires_in.map_or(DEFAULT_LIFETIME, Duration::from_secs).min(MAX_LIFETIME),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_answers() {
        assert!(matches!(classify(503, b"down", None), Err(Failure::Transient { .. })));
        assert!(matches!(
            classify(429, b"", Some(Duration::from_secs(2))),
            Err(Failure::Transient { retry_after: Some(d), .. }) if d == Duration::from_secs(2)
        ));
        assert_eq!(
            classify(400, br#"{"error":"invalid_grant","error_description":"Token is not active"}"#, None).err(),
            Some(Failure::Refused {
                status: 400,
                error: "invalid_grant".into(),
                description: Some("Token is not active".into())
            })
        );
        assert!(matches!(classify(404, b"<html>", None), Err(Failure::Invalid(_))));
        assert!(matches!(classify(200, b"{}", None), Err(Failure::Invalid(_))));
        assert!(matches!(classify(200, br#"{"access_token":"a","token_type":"mac"}"#, None), Err(Failure::Invalid(_))));
        let t =
            classify(200, br#"{"access_token":"a","token_type":"bearer","expires_in":7,"refresh_token":"r"}"#, None)
                .ok()
                .unwrap();
        assert_eq!(
            (t.access_token.as_str(), t.refresh_token.as_deref(), t.lifetime),
            ("a", Some("r"), Duration::from_secs(7))
        );
        let huge = classify(200, br#"{"access_token":"a","expires_in":18446744073709551615}"#, None).ok().unwrap();
        assert_eq!(huge.lifetime, MAX_LIFETIME);
        let bad = classify(200, br#"{"access_token": "secret-token-text"#, None).err().unwrap();
        assert!(!format!("{bad:?}").contains("secret-token-text"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let r = Retry { attempts: 5, base: Duration::from_millis(500) };
        assert_eq!(r.delay(1, None), Duration::from_millis(500));
        assert_eq!(r.delay(2, None), Duration::from_secs(1));
        assert_eq!(r.delay(3, None), Duration::from_secs(2));
        assert_eq!(r.delay(30, None), MAX_BACKOFF);
        assert_eq!(r.delay(1, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(r.delay(1, Some(Duration::from_secs(3600))), MAX_BACKOFF);
    }

    #[test]
    fn client_auth_choice() {
        assert!(matches!(ClientAuth::choose("c", None, None), ClientAuth::None));
        // Basic of "c:s%2F" (the secret "s/" form-encoded first).
        assert!(matches!(ClientAuth::choose("c", Some("s/"), None), ClientAuth::Basic(b) if b == "YzpzJTJG"));
        let post = vec!["client_secret_post".to_string()];
        assert!(matches!(ClientAuth::choose("c", Some("s"), Some(&post)), ClientAuth::Post(_)));
    }

    #[tokio::test]
    async fn retries_transient_then_gives_up() {
        let r = Retry { attempts: 3, base: Duration::from_millis(1) };
        let mut calls = 0;
        let out = r
            .run(|| {
                calls += 1;
                async { Err(Failure::Transient { detail: "x".into(), retry_after: None }) }
            })
            .await;
        assert!(matches!(out, Err(Failure::Transient { .. })));
        assert_eq!(calls, 3);
        let mut calls = 0;
        let out = r
            .run(|| {
                calls += 1;
                async { Err(Failure::Refused { status: 400, error: "invalid_grant".into(), description: None }) }
            })
            .await;
        assert!(matches!(out, Err(Failure::Refused { .. })));
        assert_eq!(calls, 1);
    }
}
