//! Credentials the proxy sends to an HTTP or remote upstream: an exchanged token (RFC 8693),
//! a fixed bearer token, the proxy's own remote login (`--remote-auth`), and configured
//! headers. The caller's own token is never among them; it is only ever the `subject_token` of
//! an exchange.

mod exchange;
mod headers;
mod remote;

use apiary_config::OutgoingConfig;
use http::{HeaderName, HeaderValue, header};

pub use exchange::{ExchangeConfigError, ExchangeError, TokenExchanger};
pub use headers::{HeaderError, check_name};
pub use remote::{persist, remote_auth_config};

use remote::RemoteSource;

/// Why one request's upstream credentials cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutgoingError {
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// No remote login token; `needs_login` when only a new login helps (the message says how).
    #[error("{message}")]
    RemoteAuth { message: String, needs_login: bool },
}

/// Why outgoing credentials cannot be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutgoingConfigError {
    #[error(transparent)]
    Exchange(#[from] ExchangeConfigError),
    #[error("outgoing header {0}")]
    Header(#[from] HeaderError),
    #[error("the environment variable {var} (for {what}) is not set")]
    MissingEnv { var: String, what: String },
    #[error("{0} and {1} both set the upstream's {2} header; choose one")]
    Conflict(&'static str, &'static str, String),
    #[error("remote auth: {0}")]
    RemoteAuth(String),
}

/// Where an exchanged token goes.
#[derive(Debug)]
struct ExchangeTarget {
    exchanger: TokenExchanger,
    header: HeaderName,
}

/// The credentials of one proxy's upstream requests.
#[derive(Debug)]
pub struct Outgoing {
    exchange: Option<ExchangeTarget>,
    /// Fixed headers (a configured bearer token among them).
    fixed: Vec<(HeaderName, HeaderValue)>,
    /// The proxy's own login to the remote: `Authorization: Bearer` with a fresh token.
    remote: Option<RemoteSource>,
}

impl Outgoing {
    /// Builds the credentials of `cfg`, reading secrets from the environment. `None` when
    /// nothing is configured.
    pub fn new(cfg: &OutgoingConfig) -> Result<Option<Outgoing>, OutgoingConfigError> {
        Self::build(cfg, true)
    }

    /// Checks `cfg` as [`Outgoing::new`] does, except the remote login's session (which does
    /// not exist before the login): for refusing a bad configuration before anything runs.
    pub fn check(cfg: &OutgoingConfig) -> Result<(), OutgoingConfigError> {
        Self::build(cfg, false).map(|_| ())
    }

    fn build(cfg: &OutgoingConfig, with_session: bool) -> Result<Option<Outgoing>, OutgoingConfigError> {
        if cfg.is_empty() {
            return Ok(None);
        }
        let mut fixed: Vec<(HeaderName, HeaderValue, &'static str)> = Vec::new();
        let value = |name: &str, v: &str| {
            let mut hv =
                HeaderValue::from_str(v.trim()).map_err(|_| HeaderError::BadValue { name: name.to_owned() })?;
            hv.set_sensitive(true);
            Ok::<_, OutgoingConfigError>(hv)
        };
        for (name, v) in &cfg.headers {
            fixed.push((check_name(name)?, value(name, v)?, "headers"));
        }
        for (name, var) in &cfg.header_env {
            let v = std::env::var(var)
                .map_err(|_| OutgoingConfigError::MissingEnv { var: var.clone(), what: format!("header {name}") })?;
            fixed.push((check_name(name)?, value(name, &v)?, "headerEnv"));
        }
        let bearer =
            match (&cfg.bearer_token, &cfg.bearer_token_env) {
                (Some(t), _) => Some(t.clone()),
                (None, Some(var)) => Some(std::env::var(var).map_err(|_| OutgoingConfigError::MissingEnv {
                    var: var.clone(),
                    what: "the bearer token".into(),
                })?),
                (None, None) => None,
            };
        if let Some(t) = bearer {
            fixed.push((
                header::AUTHORIZATION,
                value("Authorization", &format!("Bearer {}", t.trim()))?,
                "bearerToken",
            ));
        }
        let exchange = match &cfg.token_exchange {
            Some(te) => {
                let header = match &te.header_name {
                    Some(h) => check_name(h)?,
                    None => header::AUTHORIZATION,
                };
                Some(ExchangeTarget { exchanger: TokenExchanger::new(te)?, header })
            }
            None => None,
        };
        let remote = match &cfg.remote_auth {
            Some(s) if with_session => Some(RemoteSource::open(s)?),
            Some(s) => {
                remote::remote_auth_config(s)?;
                None
            }
            None => None,
        };
        if cfg.remote_auth.is_some() {
            if let Some((_, _, from)) = fixed.iter().find(|(n, _, _)| *n == header::AUTHORIZATION) {
                return Err(OutgoingConfigError::Conflict(from, "remoteAuth", "authorization".into()));
            }
            if exchange.as_ref().is_some_and(|x| x.header == header::AUTHORIZATION) {
                return Err(OutgoingConfigError::Conflict("tokenExchange", "remoteAuth", "authorization".into()));
            }
        }
        // Two sources for one header would make the upstream's view depend on order.
        for (i, (a, _, from_a)) in fixed.iter().enumerate() {
            if let Some((_, _, from_b)) = fixed[i + 1..].iter().find(|(b, _, _)| b == a) {
                return Err(OutgoingConfigError::Conflict(from_a, from_b, a.to_string()));
            }
            if let Some(x) = &exchange
                && x.header == *a
            {
                return Err(OutgoingConfigError::Conflict(from_a, "tokenExchange", a.to_string()));
            }
        }
        Ok(Some(Outgoing { exchange, fixed: fixed.into_iter().map(|(n, v, _)| (n, v)).collect(), remote }))
    }

    /// True when the caller's token is needed (as the subject of an exchange).
    pub fn needs_caller_token(&self) -> bool {
        self.exchange.is_some()
    }

    /// The headers to set on one upstream request. `caller_token` is the bearer token the
    /// caller presented (already authenticated), when an exchange needs it.
    pub async fn headers(&self, caller_token: Option<&str>) -> Result<Vec<(HeaderName, HeaderValue)>, OutgoingError> {
        let mut out = self.fixed.clone();
        if let Some(r) = &self.remote {
            let token = r.auth.access_token().await.map_err(|e| OutgoingError::RemoteAuth {
                message: remote::describe(&e, &r.hint),
                needs_login: e.needs_login(),
            })?;
            let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| OutgoingError::RemoteAuth {
                message: "the remote login's access token is not a valid header value".into(),
                needs_login: false,
            })?;
            v.set_sensitive(true);
            out.push((header::AUTHORIZATION, v));
        }
        if let Some(x) = &self.exchange {
            let Some(subject) = caller_token else {
                return Err(OutgoingError::Exchange(ExchangeError::Refused {
                    status: 401,
                    error: "invalid_request".into(),
                    description: Some("no caller token to exchange (is OIDC authentication on?)".into()),
                }));
            };
            let token = x.exchanger.exchange(subject).await?;
            let text = if x.header == header::AUTHORIZATION { format!("Bearer {token}") } else { token.to_string() };
            let mut v = HeaderValue::from_str(&text)
                .map_err(|_| ExchangeError::Unavailable("the exchanged token is not a valid header value".into()))?;
            v.set_sensitive(true);
            out.push((x.header.clone(), v));
        }
        Ok(out)
    }

    /// The remote refused the request with `authorization` (its `Authorization` value, as
    /// sent): the next request refreshes the login's token first. The refused request is not
    /// retried (an MCP POST need not be idempotent).
    pub fn remote_rejected(&self, authorization: &HeaderValue) {
        if let Some(r) = &self.remote
            && let Some(token) = authorization.to_str().ok().and_then(|v| v.strip_prefix("Bearer "))
        {
            tracing::info!("the remote refused the login's access token; it is refreshed before the next request");
            r.auth.reject(token);
        }
    }

    /// True when the proxy's own remote login supplies the upstream's `Authorization`.
    pub fn has_remote_auth(&self) -> bool {
        self.remote.is_some()
    }
}
