//! MCPExternalAuthConfig: how a workload authenticates to what is behind it (token exchange,
//! injected headers, ...); shared by reference (seed 002).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{ConfigStatus, SecretKeyRef, opaque_object};

/// Desired outgoing-authentication configuration.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "toolhive.stacklok.dev",
    version = "v1beta1",
    kind = "MCPExternalAuthConfig",
    plural = "mcpexternalauthconfigs",
    singular = "mcpexternalauthconfig",
    namespaced,
    status = "ConfigStatus",
    shortname = "extauth",
    shortname = "mcpextauth",
    category = "toolhive",
    doc = "How a workload authenticates to the server behind it.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Valid", type_ = "string", json_path = ".status.conditions[?(@.type=='Valid')].status")
)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.type == 'tokenExchange' ? has(self.tokenExchange) : !has(self.tokenExchange)",
     "message": "tokenExchange must be set if and only if type is tokenExchange"},
    {"rule": "self.type == 'headerInjection' ? has(self.headerInjection) : !has(self.headerInjection)",
     "message": "headerInjection must be set if and only if type is headerInjection"},
    {"rule": "self.type == 'bearerToken' ? has(self.bearerToken) : !has(self.bearerToken)",
     "message": "bearerToken must be set if and only if type is bearerToken"},
    {"rule": "self.type == 'embeddedAuthServer' ? has(self.embeddedAuthServer) : !has(self.embeddedAuthServer)",
     "message": "embeddedAuthServer must be set if and only if type is embeddedAuthServer"},
    {"rule": "self.type == 'awsSts' ? has(self.awsSts) : !has(self.awsSts)",
     "message": "awsSts must be set if and only if type is awsSts"},
    {"rule": "self.type == 'upstreamInject' ? has(self.upstreamInject) : !has(self.upstreamInject)",
     "message": "upstreamInject must be set if and only if type is upstreamInject"},
    {"rule": "self.type == 'obo' ? has(self.obo) : !has(self.obo)",
     "message": "obo must be set if and only if type is obo"},
    {"rule": "self.type == 'xaa' ? has(self.xaa) : !has(self.xaa)",
     "message": "xaa must be set if and only if type is xaa"},
]))]
#[serde(rename_all = "camelCase")]
pub struct MCPExternalAuthConfigSpec {
    /// Kind of outgoing authentication; the block of the same name holds its settings.
    #[serde(rename = "type")]
    pub type_: ExternalAuthType,
    /// RFC 8693 token exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_exchange: Option<TokenExchange>,
    /// A header whose value comes from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_injection: Option<HeaderInjection>,
    /// A static bearer token from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<BearerToken>,
    /// An embedded OAuth authorization server, in ToolHive's format; kept as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "opaque_object")]
    pub embedded_auth_server: Option<Value>,
    /// AWS STS role assumption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_sts: Option<AwsSts>,
    /// Inject a token obtained from an upstream provider of the embedded server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_inject: Option<UpstreamInject>,
    /// Microsoft Entra on-behalf-of flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub obo: Option<OnBehalfOf>,
    /// Cross-app access (identity-assertion authorization grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xaa: Option<CrossAppAccess>,
}

/// Kinds of outgoing authentication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ExternalAuthType {
    /// RFC 8693 token exchange.
    #[default]
    TokenExchange,
    /// A header from a Secret.
    HeaderInjection,
    /// A bearer token from a Secret.
    BearerToken,
    /// No credentials.
    Unauthenticated,
    /// An embedded authorization server.
    EmbeddedAuthServer,
    /// AWS STS.
    AwsSts,
    /// A token from an upstream provider.
    UpstreamInject,
    /// On-behalf-of.
    Obo,
    /// Cross-app access.
    Xaa,
}

/// RFC 8693 token exchange settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenExchange {
    /// Token endpoint of the authorization server.
    pub token_url: String,
    /// Client id of the exchanging party.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Secret key holding the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<SecretKeyRef>,
    /// Audience of the exchanged token.
    pub audience: String,
    /// Scopes requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Type of the subject token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^(access_token|id_token|jwt|urn:ietf:params:oauth:token-type:(access_token|id_token|jwt))?$"
    ))]
    pub subject_token_type: Option<String>,
    /// Header carrying the exchanged token instead of `Authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_token_header_name: Option<String>,
    /// Upstream provider whose token is the subject token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_provider_name: Option<String>,
}

/// A header whose value comes from a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderInjection {
    /// Header name.
    #[schemars(length(min = 1))]
    pub header_name: String,
    /// Secret key holding the value.
    pub value_secret_ref: SecretKeyRef,
}

/// A static bearer token.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BearerToken {
    /// Secret key holding the token.
    pub token_secret_ref: SecretKeyRef,
}

/// AWS STS role assumption.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AwsSts {
    /// AWS region.
    #[schemars(length(min = 1), regex(pattern = r"^[a-z]{2}(-[a-z]+)+-\d+$"))]
    pub region: String,
    /// SigV4 service name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "aws-mcp"))]
    pub service: Option<String>,
    /// Role used when no mapping matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_role_arn: Option<String>,
    /// Claim-to-role mappings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_mappings: Option<Vec<RoleMapping>>,
    /// Claim holding the caller's roles or groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "groups"))]
    pub role_claim: Option<String>,
    /// Session length in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 900, max = 43200), extend("default" = 3600))]
    pub session_duration: Option<i32>,
    /// Claim naming the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "sub"))]
    pub session_name_claim: Option<String>,
    /// Upstream provider whose token is presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_provider_name: Option<String>,
}

/// One claim-to-role mapping.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleMapping {
    /// Claim value that selects the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// Expression matched against the claims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matcher: Option<String>,
    /// Role to assume.
    pub role_arn: String,
    /// Lower wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub priority: Option<i32>,
}

/// Inject a token from an upstream provider.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamInject {
    /// Name of the upstream provider.
    #[schemars(length(min = 1))]
    pub provider_name: String,
}

/// Microsoft Entra on-behalf-of settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnBehalfOf {
    /// Tenant id or domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Authority URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Secret key holding the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<SecretKeyRef>,
    /// Audience of the new token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Scopes requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Upstream provider whose token is the subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token_provider_name: Option<String>,
    /// How long before expiry a cached token is renewed (a duration such as `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_skew: Option<String>,
}

/// Cross-app access settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrossAppAccess {
    /// Token endpoint of the identity provider.
    #[schemars(regex(pattern = r"^https://.*$"))]
    pub idp_token_url: String,
    /// Client id at the identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_client_id: Option<String>,
    /// Secret key holding the identity provider client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_client_secret_ref: Option<SecretKeyRef>,
    /// Token endpoint of the target.
    pub target_token_url: String,
    /// Allow a plain-HTTP target token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_target_token_url: Option<bool>,
    /// Client id at the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_client_id: Option<String>,
    /// Secret key holding the target client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_client_secret_ref: Option<SecretKeyRef>,
    /// Audience at the target.
    pub target_audience: String,
    /// Resource at the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_resource: Option<String>,
    /// Scopes requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Upstream provider whose token is the subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_provider_name: Option<String>,
    /// Type of the subject token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["urn:ietf:params:oauth:token-type:id_token"]))]
    pub subject_token_type: Option<String>,
}
