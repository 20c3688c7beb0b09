//! Building blocks shared by several CRDs: references to Secrets and ConfigMaps, the
//! string-or-object group reference, conditions, and the schemas of deliberately opaque fields.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Schema of a field Apiary keeps exactly as given and interprets itself (for example a
/// `PodTemplateSpec` merged into a pod). An object; its contents are not pruned.
pub fn opaque_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Schema of a list whose items are opaque objects (see [`opaque_object`]).
pub fn opaque_object_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        },
    })
}

/// Schema of the `conditions` list: `metav1.Condition` items, a map list keyed by `type` so
/// server-side apply merges conditions one by one.
pub fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let item = generator.subschema_for::<Condition>();
    json_schema!({
        "type": "array",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
    })
}

/// The conditions of a status, as every kind carries them.
pub type Conditions = Vec<Condition>;

/// A reference to an MCPGroup. ToolHive's older kinds (and Apiary's canonical form) write the
/// group's name as a string; current ToolHive writes `{name: ...}`. Both are accepted, so the
/// schema gives this field no fixed type; the value is kept exactly as written and checked by
/// [`GroupRef::name`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GroupRef(Value);

/// Why a `groupRef` value names no group.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupRefError {
    /// The value is an empty string, or an object whose `name` is empty.
    #[error("groupRef names no group: the name is empty")]
    Empty,
    /// The value is an object without a string `name`.
    #[error("groupRef must be a string or an object with a string `name`")]
    MissingName,
    /// The value is neither a string nor an object.
    #[error("groupRef must be a string or an object with a string `name`, not {0}")]
    WrongType(&'static str),
}

impl GroupRef {
    /// The canonical (string) form.
    pub fn from_name(name: impl Into<String>) -> Self {
        Self(Value::String(name.into()))
    }

    /// The object form `{name: ...}` that current ToolHive writes.
    pub fn from_object_name(name: impl Into<String>) -> Self {
        let mut map = serde_json::Map::new();
        map.insert("name".into(), Value::String(name.into()));
        Self(Value::Object(map))
    }

    /// The value exactly as written in the manifest.
    pub fn raw(&self) -> &Value {
        &self.0
    }

    /// The group's name, whichever form was written.
    pub fn name(&self) -> Result<&str, GroupRefError> {
        let name = match &self.0 {
            Value::String(s) => s.as_str(),
            Value::Object(map) => match map.get("name") {
                Some(Value::String(s)) => s.as_str(),
                _ => return Err(GroupRefError::MissingName),
            },
            Value::Null => return Err(GroupRefError::WrongType("null")),
            Value::Bool(_) => return Err(GroupRefError::WrongType("a boolean")),
            Value::Number(_) => return Err(GroupRefError::WrongType("a number")),
            Value::Array(_) => return Err(GroupRefError::WrongType("a list")),
        };
        if name.is_empty() { Err(GroupRefError::Empty) } else { Ok(name) }
    }

    /// True when the string form (canonical) was written.
    pub fn is_canonical(&self) -> bool {
        self.0.is_string()
    }
}

impl JsonSchema for GroupRef {
    fn schema_name() -> Cow<'static, str> {
        "GroupRef".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        group_ref_schema_value()
    }
}

fn group_ref_schema_value() -> Schema {
    json_schema!({
        "description": "Name of the MCPGroup: a string (canonical) or an object {name: <string>}. \
                        No fixed type in the schema; Apiary validates the value.",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// Schema for an optional `groupRef` field (no `nullable` wrapper: the node has no type).
pub fn group_ref_schema(_: &mut SchemaGenerator) -> Schema {
    group_ref_schema_value()
}

/// A key in a Secret in the referencing object's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key within the Secret.
    pub key: String,
}

/// A key in a ConfigMap in the referencing object's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap.
    pub name: String,
    /// Key within the ConfigMap.
    pub key: String,
    /// When true, a missing ConfigMap or key is not an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// A CA bundle to trust when talking TLS to a remote endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaBundleRef {
    /// ConfigMap key holding PEM certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
}

/// A reference by name to an object of a known kind in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NameRef {
    /// Name of the referenced object.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// A reference to an MCPOIDCConfig plus the per-workload OIDC settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OidcConfigRef {
    /// Name of the MCPOIDCConfig.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Audience the workload's tokens must carry (unique per workload).
    #[schemars(length(min = 1))]
    pub audience: String,
    /// Scopes advertised to clients. Default `["openid"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// Resource URL advertised in the protected-resource metadata (RFC 9728).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_url: Option<String>,
}

/// A reference to an MCPTelemetryConfig plus the per-workload service name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryConfigRef {
    /// Name of the MCPTelemetryConfig.
    #[schemars(length(min = 1))]
    pub name: String,
    /// `service.name` reported for this workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

/// The embedded authorization server a workload uses for incoming requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthServerRef {
    /// Kind of the referenced object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["MCPExternalAuthConfig"], "default" = "MCPExternalAuthConfig"))]
    pub kind: Option<String>,
    /// Name of the referenced object.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// An environment variable given literally.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Variable value.
    pub value: String,
}

/// CPU and memory quantities, as Kubernetes writes them (`100m`, `128Mi`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceList {
    /// CPU quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// Requests and limits of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequirements {
    /// Upper bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceList>,
    /// Guaranteed amounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<ResourceList>,
}

/// Labels and annotations to add to a generated object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetadataOverrides {
    /// Annotations to add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Labels to add.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// Overrides for the proxy Deployment the operator creates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyDeploymentOverrides {
    /// Annotations to add to the Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Labels to add to the Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Labels and annotations for the Deployment's pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template_metadata_overrides: Option<MetadataOverrides>,
    /// Extra environment variables of the proxy container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    /// Pull secrets for the proxy image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Resources of the proxy container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// Overrides for the objects the operator creates for a workload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceOverrides {
    /// The proxy Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_deployment: Option<ProxyDeploymentOverrides>,
    /// The proxy Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_service: Option<MetadataOverrides>,
}

/// A reference to an object by name only (for example an image pull Secret).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Name of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Where sessions are kept when the proxy runs more than one replica.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionStorage {
    /// Storage backend.
    pub provider: SessionStorageProvider,
    /// Redis address (`host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub address: Option<String>,
    /// Redis database number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0), extend("default" = 0))]
    pub db: Option<i32>,
    /// Prefix of every Redis key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    /// Secret key holding the Redis password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_ref: Option<SecretKeyRef>,
}

/// Session storage backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionStorageProvider {
    /// In the proxy's memory (one replica).
    #[default]
    Memory,
    /// A Redis server shared by the replicas.
    Redis,
}

/// Session affinity of a generated Service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SessionAffinity {
    /// Requests from one client IP go to one pod.
    #[default]
    ClientIP,
    /// No affinity.
    None,
}

/// Audit logging of MCP requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditConfig {
    /// Write an audit event per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub enabled: Option<bool>,
}

/// Inline or ConfigMap-held authorization policy of one workload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthzConfig {
    /// Where the policy comes from.
    #[serde(rename = "type")]
    pub type_: AuthzSource,
    /// The ConfigMap holding the policy (type `configMap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<AuthzConfigMapRef>,
    /// The policy itself (type `inline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<InlineAuthz>,
    /// Token claim listing the caller's groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_claim_name: Option<String>,
    /// Token claim listing the caller's roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_claim_name: Option<String>,
    /// Cedar entity type of groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub group_entity_type: Option<String>,
}

/// Sources of an authorization policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AuthzSource {
    /// A key in a ConfigMap.
    #[default]
    #[serde(rename = "configMap")]
    ConfigMap,
    /// Written in the resource.
    #[serde(rename = "inline")]
    Inline,
}

/// A ConfigMap key holding an authorization policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthzConfigMapRef {
    /// Name of the ConfigMap.
    pub name: String,
    /// Key within the ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "authz.json"))]
    pub key: Option<String>,
}

/// Cedar policies written in the resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InlineAuthz {
    /// Cedar policies.
    pub policies: Vec<String>,
    /// Cedar entities as a JSON document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "[]"))]
    pub entities_json: Option<String>,
    /// Upstream identity provider whose token is the principal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1), regex(pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"))]
    pub primary_upstream_provider: Option<String>,
}

/// Headers added to every request sent to a remote server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderForward {
    /// Header name → literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_plaintext_headers: Option<BTreeMap<String, String>>,
    /// Headers whose values come from Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_headers_from_secret: Option<Vec<HeaderFromSecret>>,
}

/// A header whose value is read from a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderFromSecret {
    /// Header name.
    #[schemars(length(min = 1))]
    pub header_name: String,
    /// Secret key holding the value.
    pub value_secret_ref: SecretKeyRef,
}

/// Transports a remote MCP server can speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RemoteTransport {
    /// Server-Sent Events (2024-11-05).
    #[serde(rename = "sse")]
    Sse,
    /// Streamable HTTP.
    #[default]
    #[serde(rename = "streamable-http")]
    StreamableHttp,
}

/// The status fields every shared-configuration kind has.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigStatus {
    /// Conditions (`Valid`, `DeletionBlocked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Option<Conditions>,
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Hash of the spec, for referrers to notice changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
}
