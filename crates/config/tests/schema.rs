//! The checked-in JSON Schema must match the Rust types, and must describe what the types write.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::PathBuf;

use apiary_config::{RunConfig, Source};
use serde_json::Value;

const REGENERATE: &str = "APIARY_UPDATE_SCHEMA=1 cargo test -p apiary-config --test schema";

fn schema_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("runconfig.schema.json")
}

fn generated() -> String {
    let mut text = serde_json::to_string_pretty(&RunConfig::json_schema()).unwrap();
    text.push('\n');
    text
}

#[test]
fn schema_file_is_fresh() {
    let path = schema_path();
    let want = generated();
    if std::env::var_os("APIARY_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; create it with: {REGENERATE}", path.display()));
    assert!(
        have == want,
        "{} is stale (the RunConfig types changed); regenerate it with:\n    {REGENERATE}",
        path.display()
    );
}

fn resolve<'a>(root: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/$defs/").expect("local ref");
        schema = &root["$defs"][name];
    }
    schema
}

/// Every object key the types write must be a property the schema declares (following `$ref`,
/// `oneOf` and `anyOf`), and every integer must lie within the schema's bounds.
fn check(root: &Value, schema: &Value, value: &Value, path: &str) {
    let schema = resolve(root, schema);
    if let Some(branches) = schema.get("oneOf").or_else(|| schema.get("anyOf")) {
        let branches = branches.as_array().unwrap();
        let fits = |b: &Value| {
            let b = resolve(root, b);
            match (value, b.get("properties")) {
                (Value::Object(m), Some(Value::Object(props))) => m.keys().all(|k| props.contains_key(k)),
                (Value::String(s), _) => b.get("const").is_none_or(|c| c == s) && b.get("type") != Some(&"null".into()),
                (Value::Null, _) => b.get("type") == Some(&"null".into()),
                _ => b.get("properties").is_none() && b.get("const").is_none(),
            }
        };
        let branch = branches.iter().find(|b| fits(b)).unwrap_or_else(|| panic!("{path}: no branch fits {value}"));
        return check(root, branch, value, path);
    }
    match value {
        Value::Object(m) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in m {
                    let sub = props.get(k).unwrap_or_else(|| panic!("{path}.{k} is not in the schema"));
                    check(root, sub, v, &format!("{path}.{k}"));
                }
            } else if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
                for (k, v) in m {
                    check(root, extra, v, &format!("{path}.{k}"));
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check(root, &schema["items"], v, &format!("{path}[{i}]"));
            }
        }
        Value::Number(n) => {
            assert_eq!(schema["type"], "integer", "{path}");
            let n = n.as_u64().unwrap();
            if let Some(min) = schema.get("minimum").and_then(Value::as_u64) {
                assert!(n >= min, "{path}: {n} < schema minimum {min}");
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_u64) {
                assert!(n <= max, "{path}: {n} > schema maximum {max}");
            }
        }
        _ => {}
    }
}

#[test]
fn schema_describes_what_the_types_write() {
    let root = serde_json::to_value(RunConfig::json_schema()).unwrap();
    let mut samples = vec![
        RunConfig::new("a", Source::npx("p")),
        RunConfig::new("b", Source::command("/bin/x", ["y"])),
        RunConfig::new("c", Source::image("i:1")),
        RunConfig::new("d", Source::remote("https://h/mcp")),
    ];
    samples[0].transport = Some(apiary_config::Transport::Sse);
    samples[0].env.insert("K".into(), "v".into());
    samples[0].proxy.allowed_origins.push("https://a.example".into());
    for c in &samples {
        c.validate().unwrap();
        let value = serde_json::to_value(c).unwrap();
        check(&root, &root, &value, "");
    }
    // The required list is exactly the fields without defaults.
    assert_eq!(root["required"], serde_json::json!(["schemaVersion", "name", "source"]));
    assert_eq!(root["additionalProperties"], false);
    // Limits carry their validated range.
    assert_eq!(root["$defs"]["Limits"]["properties"]["maxSessions"]["minimum"], 1);
    assert_eq!(root["$defs"]["Limits"]["properties"]["maxSessions"]["maximum"], 1_000_000);
}
