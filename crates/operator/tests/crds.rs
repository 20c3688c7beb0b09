//! The generated CRDs: checked in and fresh, structural, and named as names.md §1 says
//! (kinds, plurals, short names, category, printer columns, versions).

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::BTreeSet;

use apiary_operator::crd::{catalog, render};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

#[test]
fn checked_in_crds_are_up_to_date() {
    let dir = render::default_dir();
    let drift = render::check_dir(&dir).unwrap();
    assert!(
        drift.is_empty(),
        "deploy/crds/ does not match the Rust types:\n  {}\nregenerate with: cargo run -p apiary-operator --bin crdgen",
        drift.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
    );
}

#[test]
fn checked_in_yaml_parses_back_to_the_generated_crds() {
    for crd in catalog::all().unwrap() {
        let path = render::default_dir().join(catalog::file_name(&crd));
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: CustomResourceDefinition = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(serde_json::to_value(&parsed).unwrap(), serde_json::to_value(&crd).unwrap(), "{}", path.display());
    }
}

/// Fields deliberately kept as given (no fixed shape), per kind: a path of property names,
/// `[]` for list items. Anything else with `x-kubernetes-preserve-unknown-fields` is a bug.
const OPAQUE: &[(&str, &str)] = &[
    ("MCPServer", ".spec.podTemplateSpec"),
    ("MCPServer", ".spec.groupRef"),
    ("MCPServer", ".spec.rateLimiting"),
    ("MCPRemoteProxy", ".spec.podTemplateSpec"),
    ("MCPRemoteProxy", ".spec.groupRef"),
    ("MCPServerEntry", ".spec.groupRef"),
    ("VirtualMCPServer", ".spec.podTemplateSpec"),
    ("VirtualMCPServer", ".spec.groupRef"),
    ("VirtualMCPServer", ".spec.authServerConfig"),
    ("VirtualMCPServer", ".spec.config.compositeTools[]"),
    ("VirtualMCPServer", ".spec.config.telemetry"),
    ("VirtualMCPServer", ".spec.config.audit"),
    ("VirtualMCPServer", ".spec.config.rateLimiting"),
    ("MCPExternalAuthConfig", ".spec.embeddedAuthServer"),
    ("MCPAuthzConfig", ".spec.config"),
];

/// Fields without a fixed type (so without `type`): the string-or-object group references.
const UNTYPED: &[&str] = &[".spec.groupRef"];

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    }
}

fn walk(path: &str, node: &Value, problems: &mut Vec<String>, opaque: &mut BTreeSet<String>) {
    let Some(obj) = node.as_object() else {
        problems.push(format!("{path}: schema is not an object"));
        return;
    };
    for k in ["anyOf", "oneOf", "allOf", "not", "$ref", "definitions", "$defs"] {
        if obj.contains_key(k) {
            problems.push(format!("{path}: has {k}"));
        }
    }
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if preserve {
        opaque.insert(path.to_string());
    }
    let ty = obj.get("type").and_then(Value::as_str);
    match ty {
        Some(t) if ["string", "integer", "number", "boolean", "array", "object"].contains(&t) => {}
        Some(t) => problems.push(format!("{path}: unknown type {t}")),
        None if preserve && UNTYPED.contains(&path) => {}
        None => problems.push(format!("{path}: no type")),
    }
    if let (Some(t), Some(d)) = (ty, obj.get("default"))
        && !type_matches(t, d)
    {
        problems.push(format!("{path}: default {d} is not a {t}"));
    }
    if let Some(values) = obj.get("enum").and_then(Value::as_array) {
        for v in values {
            if !ty.is_some_and(|t| type_matches(t, v)) {
                problems.push(format!("{path}: enum value {v} does not match type {ty:?}"));
            }
        }
        if let Some(d) = obj.get("default")
            && !values.contains(d)
        {
            problems.push(format!("{path}: default {d} is not among the enum values"));
        }
    }
    let props = obj.get("properties").and_then(Value::as_object);
    if props.is_some() && ty != Some("object") {
        problems.push(format!("{path}: properties on a non-object"));
    }
    if props.is_some() && obj.contains_key("additionalProperties") {
        problems.push(format!("{path}: both properties and additionalProperties"));
    }
    if let Some(required) = obj.get("required").and_then(Value::as_array) {
        for r in required {
            let r = r.as_str().unwrap_or_default();
            if !props.is_some_and(|p| p.contains_key(r)) {
                problems.push(format!("{path}: required {r} is not a property"));
            }
        }
    }
    if let Some(props) = props {
        for (name, child) in props {
            walk(&format!("{path}.{name}"), child, problems, opaque);
        }
    }
    match (ty, obj.get("items")) {
        (Some("array"), Some(items)) => walk(&format!("{path}[]"), items, problems, opaque),
        (Some("array"), None) => problems.push(format!("{path}: array without items")),
        (_, Some(_)) => problems.push(format!("{path}: items on a non-array")),
        _ => {}
    }
    match obj.get("additionalProperties") {
        None => {}
        Some(Value::Object(_)) => walk(&format!("{path}.*"), &obj["additionalProperties"], problems, opaque),
        Some(other) => problems.push(format!("{path}: additionalProperties {other}")),
    }
    if obj.get("x-kubernetes-list-type") == Some(&Value::from("map")) {
        let keys = obj.get("x-kubernetes-list-map-keys").and_then(Value::as_array);
        let item_required = obj["items"]["required"].as_array();
        match (keys, item_required) {
            (Some(keys), Some(req)) if keys.iter().all(|k| req.contains(k)) => {}
            _ => problems.push(format!("{path}: map list keys must be required item fields")),
        }
    }
}

fn schema_of(crd: &CustomResourceDefinition, version: usize) -> Value {
    serde_json::to_value(&crd.spec.versions[version].schema).unwrap()["openAPIV3Schema"].clone()
}

#[test]
fn schemas_are_structural_and_opaque_only_where_meant() {
    let mut problems = Vec::new();
    for crd in catalog::all().unwrap() {
        let kind = crd.spec.names.kind.clone();
        let schema = schema_of(&crd, 0);
        let mut opaque = BTreeSet::new();
        let mut p = Vec::new();
        walk("", &schema, &mut p, &mut opaque);
        problems.extend(p.into_iter().map(|p| format!("{kind} {p}")));
        let expected: BTreeSet<String> =
            OPAQUE.iter().filter(|(k, _)| *k == kind).map(|(_, p)| p.to_string()).collect();
        if opaque != expected {
            problems.push(format!("{kind}: preserve-unknown-fields at {opaque:?}, expected {expected:?}"));
        }
        // Conditions are a map list keyed by type.
        let conditions = &schema["properties"]["status"]["properties"]["conditions"];
        if conditions["x-kubernetes-list-type"] != "map"
            || conditions["x-kubernetes-list-map-keys"] != serde_json::json!(["type"])
        {
            problems.push(format!("{kind}: status.conditions is not a map list keyed by type"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_structural_walk_catches_what_it_should() {
    let bad = serde_json::json!({
        "type": "object",
        "properties": {
            "a": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "b": {"type": "string", "enum": ["x"], "default": "y"},
            "c": {"type": "array"},
            "d": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        },
        "required": ["e"],
    });
    let mut problems = Vec::new();
    let mut opaque = BTreeSet::new();
    walk("", &bad, &mut problems, &mut opaque);
    assert_eq!(
        problems,
        vec![
            ": required e is not a property",
            ".a: has anyOf",
            ".a: no type",
            ".b: default \"y\" is not among the enum values",
            ".c: array without items",
        ]
    );
    assert_eq!(opaque.into_iter().collect::<Vec<_>>(), vec![".d"]);
}

/// names.md §1: kind, plural, short names, printer columns (name → JSONPath, priority).
struct Names {
    kind: &'static str,
    group: &'static str,
    plural: &'static str,
    short: &'static [&'static str],
    columns: &'static [(&'static str, &'static str, i32)],
    storage: &'static str,
}

const AGE: (&str, &str, i32) = ("Age", ".metadata.creationTimestamp", 0);
const READY: (&str, &str, i32) = ("Ready", ".status.conditions[?(@.type=='Ready')].status", 0);
const VALID: (&str, &str, i32) = ("Valid", ".status.conditions[?(@.type=='Valid')].status", 0);
const TH: &str = "toolhive.stacklok.dev";

const NAMES: &[Names] = &[
    Names {
        kind: "MCPServer",
        group: TH,
        plural: "mcpservers",
        short: &["mcpserver", "mcpservers"],
        columns: &[
            ("Status", ".status.phase", 0),
            ("URL", ".status.url", 0),
            AGE,
            ("Ready", ".status.conditions[?(@.type=='Ready')].status", 1),
            ("Replicas", ".status.readyReplicas", 1),
        ],
        storage: "v1beta1",
    },
    Names {
        kind: "MCPRemoteProxy",
        group: TH,
        plural: "mcpremoteproxies",
        short: &["rp", "mcprp"],
        columns: &[
            ("Phase", ".status.phase", 0),
            ("Remote URL", ".spec.remoteURL", 0),
            ("URL", ".status.url", 0),
            READY,
            AGE,
        ],
        storage: "v1beta1",
    },
    Names {
        kind: "MCPServerEntry",
        group: TH,
        plural: "mcpserverentries",
        short: &["mcpentry"],
        columns: &[
            ("Phase", ".status.phase", 0),
            ("Transport", ".spec.transport", 0),
            ("Remote URL", ".spec.remoteURL", 0),
            ("Group", ".spec.groupRef", 0),
            AGE,
        ],
        storage: "v1beta1",
    },
    Names {
        kind: "MCPGroup",
        group: TH,
        plural: "mcpgroups",
        short: &["mcpg", "mcpgroup"],
        columns: &[
            ("Servers", ".status.serverCount", 0),
            ("Proxies", ".status.remoteProxyCount", 0),
            ("Phase", ".status.phase", 0),
            ("Checked", ".status.conditions[?(@.type=='MCPServersChecked')].status", 0),
            AGE,
        ],
        storage: "v1beta1",
    },
    Names {
        kind: "MCPExternalAuthConfig",
        group: TH,
        plural: "mcpexternalauthconfigs",
        short: &["extauth", "mcpextauth"],
        columns: &[("Type", ".spec.type", 0), VALID],
        storage: "v1beta1",
    },
    Names {
        kind: "MCPOIDCConfig",
        group: TH,
        plural: "mcpoidcconfigs",
        short: &["mcpoidc"],
        columns: &[("Source", ".spec.type", 0), VALID, AGE],
        storage: "v1beta1",
    },
    Names {
        kind: "MCPAuthzConfig",
        group: TH,
        plural: "mcpauthzconfigs",
        short: &["authzcfg"],
        columns: &[("Type", ".spec.type", 0), VALID, AGE],
        storage: "v1beta1",
    },
    Names {
        kind: "MCPToolConfig",
        group: TH,
        plural: "mcptoolconfigs",
        short: &["tc", "toolconfig"],
        columns: &[VALID, AGE],
        storage: "v1beta1",
    },
    Names {
        kind: "MCPTelemetryConfig",
        group: TH,
        plural: "mcptelemetryconfigs",
        short: &["mcpotel"],
        columns: &[
            ("Endpoint", ".spec.openTelemetry.endpoint", 0),
            VALID,
            ("Tracing", ".spec.openTelemetry.tracing.enabled", 0),
            ("Metrics", ".spec.openTelemetry.metrics.enabled", 0),
            AGE,
        ],
        storage: "v1beta1",
    },
    Names {
        kind: "VirtualMCPServer",
        group: TH,
        plural: "virtualmcpservers",
        short: &["vmcp", "virtualmcp"],
        columns: &[
            ("Phase", ".status.phase", 0),
            ("URL", ".status.url", 0),
            ("Backends", ".status.backendCount", 0),
            AGE,
            READY,
        ],
        storage: "v1beta1",
    },
    Names {
        kind: "MCPServerRegistration",
        group: "mcp.kuadrant.io",
        plural: "mcpserverregistrations",
        short: &["mcpsr"],
        columns: &[
            ("Prefix", ".spec.prefix", 0),
            ("Target", ".spec.targetRef.name", 0),
            ("Path", ".spec.path", 0),
            READY,
            ("Tools", ".status.discoveredTools", 0),
            AGE,
        ],
        storage: "v1",
    },
];

#[test]
fn names_versions_and_columns_follow_the_contract() {
    let crds = catalog::all().unwrap();
    assert_eq!(crds.len(), NAMES.len());
    for want in NAMES {
        let crd =
            crds.iter().find(|c| c.spec.names.kind == want.kind).unwrap_or_else(|| panic!("no CRD for {}", want.kind));
        let names = &crd.spec.names;
        assert_eq!(crd.spec.group, want.group, "{}", want.kind);
        assert_eq!(names.plural, want.plural, "{}", want.kind);
        assert_eq!(crd.metadata.name.as_deref(), Some(format!("{}.{}", want.plural, want.group).as_str()));
        assert_eq!(crd.spec.scope, "Namespaced", "{}", want.kind);
        assert_eq!(names.short_names.as_deref().unwrap_or_default(), want.short, "{}", want.kind);
        let categories = names.categories.clone().unwrap_or_default();
        if want.group == TH {
            assert_eq!(categories, vec!["toolhive".to_string()], "{}", want.kind);
        } else {
            assert!(categories.is_empty(), "{}: Kuadrant's kind is in no category", want.kind);
        }
        assert_eq!(crd.spec.conversion.as_ref().map(|c| c.strategy.as_str()), Some("None"), "{}", want.kind);

        let versions = &crd.spec.versions;
        let served: Vec<_> = versions.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(served, vec![want.storage, "v1alpha1"], "{}", want.kind);
        for v in versions {
            assert!(v.served, "{} {}", want.kind, v.name);
            assert_eq!(v.storage, v.name == want.storage, "{} {}", want.kind, v.name);
            assert_ne!(v.deprecated, Some(true), "{} {} must not be deprecated", want.kind, v.name);
            assert!(v.deprecation_warning.is_none());
            assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
            let columns: Vec<(String, String, i32)> = v
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| (c.name.clone(), c.json_path.clone(), c.priority.unwrap_or(0)))
                .collect();
            let expected: Vec<(String, String, i32)> =
                want.columns.iter().map(|(n, p, pr)| (n.to_string(), p.to_string(), *pr)).collect();
            assert_eq!(columns, expected, "{} {} printer columns", want.kind, v.name);
        }
        let mut a = serde_json::to_value(&versions[0]).unwrap();
        let mut b = serde_json::to_value(&versions[1]).unwrap();
        for v in [&mut a, &mut b] {
            let o = v.as_object_mut().unwrap();
            o.remove("name");
            o.remove("storage");
        }
        assert_eq!(a, b, "{}: the two versions must be identical", want.kind);
    }
}

#[test]
fn spec_defaults_and_enums_are_in_the_schema() {
    let crds = catalog::all().unwrap();
    let spec = |kind: &str| {
        let crd = crds.iter().find(|c| c.spec.names.kind == kind).unwrap();
        schema_of(crd, 0)["properties"]["spec"].clone()
    };
    let server = spec("MCPServer");
    let transport = &server["properties"]["transport"];
    assert_eq!(transport["default"], "stdio");
    assert_eq!(transport["enum"], serde_json::json!(["stdio", "streamable-http", "sse"]));
    assert_eq!(server["required"], serde_json::json!(["image"]));
    // proxyPort/mcpPort: 8080 applied by the operator, not the schema: a schema default
    // would always win over the older `port`/`targetPort` the seeds write.
    for f in ["proxyPort", "port", "mcpPort", "targetPort"] {
        assert!(server["properties"][f]["default"].is_null(), "{f}");
        assert_eq!(server["properties"][f]["maximum"], 65535.0, "{f}");
    }
    assert_eq!(
        server["properties"]["permissionProfile"]["properties"]["type"]["enum"],
        serde_json::json!(["builtin", "configmap", "configMap"])
    );
    assert_eq!(spec("MCPRemoteProxy")["properties"]["proxyPort"]["default"], 8080);
    let entry = spec("MCPServerEntry");
    assert_eq!(entry["required"], serde_json::json!(["groupRef", "transport"]));
    assert_eq!(entry["properties"]["transport"]["enum"], serde_json::json!(["sse", "streamable-http"]));
    assert!(entry["properties"]["transport"]["default"].is_null());
    for f in ["remoteURL", "remoteUrl"] {
        assert_eq!(entry["properties"][f]["pattern"], "^https?://", "{f}");
    }
    assert_eq!(spec("VirtualMCPServer")["properties"]["outgoingAuth"]["properties"]["source"]["default"], "discovered");
    let reg = spec("MCPServerRegistration");
    assert_eq!(reg["properties"]["path"]["default"], "/mcp");
    assert_eq!(reg["required"], serde_json::json!(["targetRef"]));
}
