//! Why a caller was not authenticated, and why a configuration cannot be used. The texts are
//! fixed strings (never parts of the token) because they end up in `WWW-Authenticate`
//! `error_description` and in logs.

/// Why a presented token was refused (a 401 with `error="invalid_token"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    /// `alg` is `none`, an HMAC algorithm, or not on the allow-list.
    AlgorithmNotAllowed,
    /// The signature does not verify with the issuer's key.
    Signature,
    /// `iss` is not the configured issuer.
    Issuer,
    /// `aud` does not contain the configured audience.
    Audience,
    /// `exp` is in the past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// No signing key of the issuer has the token's `kid`, even after one refetch.
    UnknownKey,
    /// The key with this `kid` may not verify this token (an `enc` key, another algorithm).
    KeyNotUsable,
    /// The token has no `kid` and the issuer has more than one candidate key.
    AmbiguousKey,
    /// A required claim is absent (`exp`, `iss`, `aud`, `sub`).
    MissingClaim,
    /// A registered claim has the wrong type.
    ClaimFormat,
}

impl InvalidReason {
    /// A short fixed description, safe to quote in a header.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::AlgorithmNotAllowed => "token algorithm not allowed",
            InvalidReason::Signature => "token signature invalid",
            InvalidReason::Issuer => "token issuer not accepted",
            InvalidReason::Audience => "token audience not accepted",
            InvalidReason::Expired => "token expired",
            InvalidReason::NotYetValid => "token not yet valid",
            InvalidReason::UnknownKey => "token signing key unknown",
            InvalidReason::KeyNotUsable => "token signing key not usable for this algorithm",
            InvalidReason::AmbiguousKey => "token has no kid and the issuer has several keys",
            InvalidReason::MissingClaim => "token lacks a required claim",
            InvalidReason::ClaimFormat => "token claim has the wrong type",
        }
    }
}

impl std::fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the caller is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthnError {
    /// No `Authorization` header, or not a `Bearer` one.
    #[error("no bearer token")]
    Missing,
    /// A bearer token that is not a token at all (bad encoding, not a JWT and no introspection).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// A well-formed token that fails a check.
    #[error("invalid token: {reason}")]
    Invalid { reason: InvalidReason },
    /// The token is over the size cap; it was not decoded.
    #[error("token too large")]
    TooLarge,
    /// The introspection endpoint said the token is not active.
    #[error("token is not active")]
    Inactive,
    /// The issuer's keys or introspection endpoint could not be reached: the token could not be
    /// checked, so it is refused (503, never let through).
    #[error("issuer unavailable, retry in {retry_after_secs} s")]
    Unavailable { retry_after_secs: u64 },
    /// A valid token that lacks a required scope (403 `insufficient_scope`, RFC 6750 §3.1).
    /// `missing` is the space-separated list of the required scopes it lacks (configured
    /// names, never parts of the token).
    #[error("token lacks the required scope(s): {missing}")]
    InsufficientScope { missing: String },
}

impl AuthnError {
    /// True when the answer should be 503 (try again later) rather than 401.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, AuthnError::Unavailable { .. })
    }

    /// True when the caller is known but may not come in (403), rather than unknown (401).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, AuthnError::InsufficientScope { .. })
    }

    /// True when the caller presented a token (so the challenge carries an `error` code).
    pub fn token_presented(&self) -> bool {
        !matches!(self, AuthnError::Missing | AuthnError::Unavailable { .. })
    }

    /// The RFC 6750 `error` code of the challenge, when a token was presented.
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            AuthnError::Missing | AuthnError::Unavailable { .. } => None,
            AuthnError::InsufficientScope { .. } => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }

    pub(crate) fn invalid(reason: InvalidReason) -> AuthnError {
        AuthnError::Invalid { reason }
    }

    /// The fixed `error_description` for a challenge.
    pub fn description(&self) -> &'static str {
        match self {
            AuthnError::Missing => "no bearer token",
            AuthnError::Malformed(what) => what,
            AuthnError::Invalid { reason } => reason.as_str(),
            AuthnError::TooLarge => "token too large",
            AuthnError::Inactive => "token is not active",
            AuthnError::Unavailable { .. } => "issuer unavailable",
            AuthnError::InsufficientScope { .. } => "token lacks a required scope",
        }
    }
}

/// Why an [`OidcConfig`](apiary_config::OidcConfig) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthnConfigError {
    #[error("oidc {field}: {value:?} is not a URL: {source}")]
    NotAUrl { field: &'static str, value: String, source: url::ParseError },
    #[error(
        "oidc {field}: {value:?} must be https (plain HTTP only with insecureAllowHttp / --oidc-insecure-allow-http, for tests)"
    )]
    NotHttps { field: &'static str, value: String },
    #[error("oidc {field} is empty")]
    Empty { field: &'static str },
    #[error("oidc clientSecret is set without clientId")]
    SecretWithoutClient,
    #[error("oidc requiredScopes: {value:?} is not a scope (one word, no spaces)")]
    BadScope { value: String },
    #[error("oidc: cannot build the HTTP client: {0}")]
    HttpClient(String),
}
