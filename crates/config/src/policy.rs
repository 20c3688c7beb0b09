//! The protections a proxy applies to every request: who the caller is (OIDC), what they may do
//! (an authorization document), what is recorded (audit), and which tools they see (filter and
//! override). The documents whose format is ToolHive's (authz, audit) are kept as JSON here and
//! parsed by the `policy` crate, which owns their meaning; this crate only carries them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How callers are authenticated: bearer tokens checked against an OIDC issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcConfig {
    /// Issuer URL (`iss` must equal it). Its discovery document gives the JWKS URL unless
    /// `jwksUrl` is set.
    pub issuer: String,
    /// Expected `aud` of tokens. Unset: the audience is not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// JWKS URL; skips discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// RFC 7662 introspection endpoint, for tokens that are not JWTs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_url: Option<String>,
    /// Client id used to authenticate to the introspection endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Client secret used to authenticate to the introspection endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Name of an environment variable of the proxy that holds the client secret, so the
    /// secret stays out of this document (the operator sets it from a Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// Scopes advertised in the protected-resource metadata and in `WWW-Authenticate`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// This resource's canonical URL (RFC 9728 `resource`). Unset: the metadata endpoint is 404.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_url: Option<String>,
    /// Allow an `http://` issuer, JWKS or introspection URL (tests only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_allow_http: bool,
    /// Least seconds between two fetches of the issuer's keys (an unknown `kid` triggers one
    /// fetch at most this often, so random kids cannot flood the issuer). Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_min_refresh_secs: Option<u64>,
}

/// One entry of a tools-override file: the name and description clients see instead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolOverride {
    /// The name clients see and call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The description clients see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Which tools clients see, and under which names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ToolsConfig {
    /// Only these tools (by the server's own names) are listed and callable. Empty: all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filter: Vec<String>,
    /// Renames and new descriptions, keyed by the server's own tool name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, ToolOverride>,
}

impl ToolsConfig {
    /// True when neither a filter nor an override is set.
    pub fn is_empty(&self) -> bool {
        self.filter.is_empty() && self.overrides.is_empty()
    }
}

/// Every protection of one proxy. All unset: the proxy serves anyone, as before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Bearer-token authentication. Unset: every caller is anonymous.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcConfig>,
    /// An authorization document in ToolHive's format (`{"version":"1.0","type":"cedarv1",
    /// "cedar":{"policies":[…],"entities_json":"[]"}}`). Set: default deny.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authz: Option<serde_json::Value>,
    /// An audit document in ToolHive's format (`component`, `logFile`, `eventTypes`, …). Set:
    /// one event per MCP request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<serde_json::Value>,
    /// Tool filter and overrides.
    #[serde(skip_serializing_if = "ToolsConfig::is_empty")]
    pub tools: ToolsConfig,
}

impl PolicyConfig {
    /// True when nothing is configured.
    pub fn is_empty(&self) -> bool {
        self.oidc.is_none() && self.authz.is_none() && self.audit.is_none() && self.tools.is_empty()
    }
}
