//! `externalAuthConfigRef`: the MCPExternalAuthConfig of a parent turned into the credentials the
//! proxy sends upstream (`RunConfig.policy.outgoing`). Every secret becomes an environment
//! variable of the runner read from its Secret by the kubelet; the RunConfig only names the
//! variable. Types the proxy cannot carry out are refused here, so the parent fails closed with
//! a condition naming the type instead of serving without the credentials it was asked to use.

use std::collections::BTreeMap;

use apiary_config::{OutgoingConfig, SubjectTokenType, TokenExchangeConfig};
use apiary_policy::outgoing::{TokenExchanger, check_name};
use k8s_openapi::api::core::v1::EnvVar;

use super::{PolicyError, hash_spec, secret_env};
use crate::crd::common::SecretKeyRef;
use crate::crd::externalauth::{ExternalAuthType, MCPExternalAuthConfig, TokenExchange};

/// Environment variable of the runner holding the token-exchange client secret.
pub const TOKEN_EXCHANGE_SECRET_ENV: &str = "TOOLHIVE_TOKEN_EXCHANGE_CLIENT_SECRET";
/// Environment variable of the runner holding the injected header's value.
pub const HEADER_INJECTION_ENV: &str = "TOOLHIVE_HEADER_INJECTION_VALUE";
/// Environment variable of the runner holding the static bearer token.
pub const BEARER_TOKEN_ENV: &str = "TOOLHIVE_BEARER_TOKEN";

const FIELD: &str = "spec.externalAuthConfigRef";
const KIND: &str = "MCPExternalAuthConfig";

/// What one MCPExternalAuthConfig gives the proxy.
#[derive(Clone, Debug, Default)]
pub struct Outgoing {
    /// `RunConfig.policy.outgoing`.
    pub config: OutgoingConfig,
    /// The runner's secret variables, as `secretKeyRef`s.
    pub env: Vec<EnvVar>,
    /// sha256 of the MCPExternalAuthConfig's spec.
    pub hash: String,
}

/// The outgoing credentials of the MCPExternalAuthConfig `name` (`found`, `None` when missing).
pub fn outgoing(name: &str, found: Option<&MCPExternalAuthConfig>) -> Result<Outgoing, PolicyError> {
    let config = found.ok_or_else(|| PolicyError::Missing { field: FIELD, kind: KIND, name: name.to_string() })?;
    let invalid = |reason: String| PolicyError::Invalid { field: FIELD, kind: KIND, name: name.to_string(), reason };
    let spec = &config.spec;
    let block = |t: &str| invalid(format!("type {t} without a {t} section"));
    if let Some(why) = unsupported(spec.type_) {
        return Err(invalid(why));
    }
    let mut out = Outgoing { hash: hash_spec(spec), ..Default::default() };
    match spec.type_ {
        ExternalAuthType::Unauthenticated => {}
        ExternalAuthType::TokenExchange => {
            let te = spec.token_exchange.as_ref().ok_or_else(|| block("tokenExchange"))?;
            let secret =
                secret_ref(te.client_secret_ref.as_ref(), "tokenExchange.clientSecretRef").map_err(&invalid)?;
            out.config.token_exchange = Some(token_exchange(te).map_err(&invalid)?);
            out.env.push(secret_env(TOKEN_EXCHANGE_SECRET_ENV, secret));
        }
        ExternalAuthType::HeaderInjection => {
            let h = spec.header_injection.as_ref().ok_or_else(|| block("headerInjection"))?;
            check_name(&h.header_name).map_err(|e| invalid(format!("headerInjection.headerName: {e}")))?;
            let secret = secret_ref(Some(&h.value_secret_ref), "headerInjection.valueSecretRef").map_err(&invalid)?;
            out.config.header_env = BTreeMap::from([(h.header_name.trim().to_string(), HEADER_INJECTION_ENV.into())]);
            out.env.push(secret_env(HEADER_INJECTION_ENV, secret));
        }
        ExternalAuthType::BearerToken => {
            let b = spec.bearer_token.as_ref().ok_or_else(|| block("bearerToken"))?;
            let secret = secret_ref(Some(&b.token_secret_ref), "bearerToken.tokenSecretRef").map_err(&invalid)?;
            out.config.bearer_token_env = Some(BEARER_TOKEN_ENV.into());
            out.env.push(secret_env(BEARER_TOKEN_ENV, secret));
        }
        // Refused above by `unsupported`.
        _ => {}
    }
    Ok(out)
}

/// Why Apiary cannot carry out an MCPExternalAuthConfig of type `t`, `None` when it can. The
/// one place that decides: the proxy's resolution above, the MCPExternalAuthConfig's own `Valid`
/// condition and the MCPServerEntry's `ExternalAuthConfigValidated` all ask it.
pub fn unsupported(t: ExternalAuthType) -> Option<String> {
    match t {
        ExternalAuthType::Unauthenticated
        | ExternalAuthType::TokenExchange
        | ExternalAuthType::HeaderInjection
        | ExternalAuthType::BearerToken => None,
        other => Some(format!(
            "type {} is not supported by Apiary yet; use tokenExchange, headerInjection, bearerToken or \
             unauthenticated",
            type_name(other)
        )),
    }
}

/// The manifest spelling of a type.
fn type_name(t: ExternalAuthType) -> String {
    serde_json::to_value(t).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| format!("{t:?}"))
}

/// A Secret key reference with both parts set.
fn secret_ref<'a>(r: Option<&'a SecretKeyRef>, what: &str) -> Result<&'a SecretKeyRef, String> {
    match r {
        Some(r) if !r.name.is_empty() && !r.key.is_empty() => Ok(r),
        Some(_) => Err(format!("{what} needs both a Secret name and a key")),
        None => Err(format!("{what} is not set: Apiary authenticates to the token endpoint with a client secret")),
    }
}

/// The proxy's token exchange settings, checked as the proxy will check them.
fn token_exchange(te: &TokenExchange) -> Result<TokenExchangeConfig, String> {
    let client_id = te.client_id.clone().filter(|c| !c.is_empty()).ok_or_else(|| {
        "tokenExchange.clientId is not set: Apiary authenticates to the token endpoint as a client".to_string()
    })?;
    if te.subject_provider_name.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err("tokenExchange.subjectProviderName needs an embedded authorization server, which Apiary does not \
                    support yet"
            .into());
    }
    let subject_token_type = match te.subject_token_type.as_deref().unwrap_or_default() {
        "" | "access_token" | "urn:ietf:params:oauth:token-type:access_token" => SubjectTokenType::AccessToken,
        "id_token" | "urn:ietf:params:oauth:token-type:id_token" => SubjectTokenType::IdToken,
        other => {
            return Err(format!(
                "tokenExchange.subjectTokenType {other} is not supported by Apiary yet; use access_token or id_token"
            ));
        }
    };
    let header_name = match te.external_token_header_name.as_deref().map(str::trim).filter(|h| !h.is_empty()) {
        Some(h) => {
            check_name(h).map_err(|e| format!("tokenExchange.externalTokenHeaderName: {e}"))?;
            Some(h.to_string())
        }
        None => None,
    };
    let config = TokenExchangeConfig {
        token_url: te.token_url.clone(),
        client_id,
        client_secret: None,
        client_secret_env: Some(TOKEN_EXCHANGE_SECRET_ENV.into()),
        audience: Some(te.audience.clone()).filter(|a| !a.is_empty()),
        scopes: te.scopes.clone().unwrap_or_default(),
        header_name,
        subject_token_type,
        insecure_allow_http: false,
    };
    // The proxy's own check (an https URL that parses), with a stand-in for the secret, which
    // the operator never reads.
    let mut check = config.clone();
    check.client_secret = Some("(from the Secret)".into());
    TokenExchanger::new(&check).map_err(|e| e.to_string())?;
    Ok(config)
}

/// True when the credentials need the caller's authenticated token.
pub fn needs_caller_token(config: &OutgoingConfig) -> bool {
    config.token_exchange.is_some()
}
