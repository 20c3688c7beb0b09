//! The `x-mcp-header` annotations of a tool's input schema (SEP-2243, 2026-07-28): which
//! arguments a client mirrors in `Mcp-Param-*` headers, and whether a tool's annotations are
//! valid at all. An annotation is valid only on a property reached from the schema's root
//! through `properties` alone (not under `items`, a composition or conditional keyword,
//! `$defs`, …), naming an HTTP field-name token, on a `string`, `integer` or `boolean`
//! property, unique (case-insensitively) in the schema. A tool with one invalid annotation
//! is dropped by a client (mcp-brief.md rule 31): none of its annotations count. Numbers in
//! the schema are never decoded (a `1e400` default does not fail the read).

use std::collections::{BTreeMap, HashMap};

use serde_json::value::RawValue;

/// The annotation's key in a property's schema.
pub const ANNOTATION: &str = "x-mcp-header";

/// Keywords whose value is one subschema: an annotation under them is off the chain.
const SUBSCHEMA_ONE: [&str; 11] = [
    "items",
    "contains",
    "unevaluatedItems",
    "additionalProperties",
    "propertyNames",
    "unevaluatedProperties",
    "not",
    "if",
    "then",
    "else",
    "contentSchema",
];
/// Keywords whose value is a list of subschemas.
const SUBSCHEMA_LIST: [&str; 4] = ["allOf", "anyOf", "oneOf", "prefixItems"];
/// Keywords whose value maps names to subschemas.
const SUBSCHEMA_MAP: [&str; 4] = ["patternProperties", "dependentSchemas", "$defs", "definitions"];
/// The property types an annotation may sit on (`number` is not one: its text form is not
/// portable).
const PRIMITIVE_TYPES: [&str; 3] = ["string", "integer", "boolean"];
/// Schema positions read at most in one tool's schema; a larger schema is refused.
pub const MAX_POSITIONS: usize = 10_000;

/// One annotated argument: `arguments.<path…>` travels in `Mcp-Param-<header>` too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotated {
    /// The chain of `properties` keys from the root to the property (one key at top level).
    pub path: Vec<String>,
    pub header: String,
}

/// Why a tool's annotations are invalid (the first problem found).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAnnotation {
    #[error("x-mcp-header at a schema position not reached through `properties` alone")]
    Unreachable,
    #[error("property {0}: x-mcp-header must be a string")]
    NotAString(String),
    #[error("property {0}: x-mcp-header {1:?} is not an HTTP field-name token")]
    NotAToken(String, String),
    #[error("property {0}: x-mcp-header is allowed on string, integer and boolean properties only")]
    NotPrimitive(String),
    #[error("property {0}: x-mcp-header {1:?} repeats the one of property {2} (case-insensitively)")]
    Duplicate(String, String, String),
    #[error("the input schema has more than {MAX_POSITIONS} schema positions")]
    TooLarge,
}

/// An RFC 9110 field-name token (`1*tchar`).
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A schema position's members; `None` for a value that is not an object (`true`, a list…).
fn object(raw: &RawValue) -> Option<BTreeMap<String, &RawValue>> {
    if !raw.get().starts_with('{') {
        return None;
    }
    serde_json::from_str(raw.get()).ok()
}

/// The annotations of `schema` (a tool's `inputSchema`, JSON text), sorted by path; or why
/// they are invalid. A schema that cannot be read as JSON has none.
pub fn annotations(schema: &str) -> Result<Vec<Annotated>, InvalidAnnotation> {
    let Ok(root) = serde_json::from_str::<&RawValue>(schema) else { return Ok(Vec::new()) };
    // (chain of `properties` keys, or `None` once another keyword was crossed; position)
    let mut stack: Vec<(Option<Vec<String>>, &RawValue)> = vec![(Some(Vec::new()), root)];
    let mut found = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut visited = 0usize;
    while let Some((path, node)) = stack.pop() {
        visited += 1;
        if visited > MAX_POSITIONS {
            return Err(InvalidAnnotation::TooLarge);
        }
        let Some(members) = object(node) else { continue };
        if let Some(header) = members.get(ANNOTATION) {
            let path = path.clone().filter(|p| !p.is_empty()).ok_or(InvalidAnnotation::Unreachable)?;
            let at = path.join(".");
            let header: String =
                serde_json::from_str(header.get()).map_err(|_| InvalidAnnotation::NotAString(at.clone()))?;
            if !is_token(&header) {
                return Err(InvalidAnnotation::NotAToken(at, header));
            }
            let kind = members.get("type").and_then(|t| serde_json::from_str::<String>(t.get()).ok());
            if !kind.is_some_and(|k| PRIMITIVE_TYPES.contains(&k.as_str())) {
                return Err(InvalidAnnotation::NotPrimitive(at));
            }
            if let Some(first) = seen.insert(header.to_ascii_lowercase(), at.clone()) {
                return Err(InvalidAnnotation::Duplicate(at, header, first));
            }
            found.push(Annotated { path, header });
        }
        for (keyword, value) in &members {
            let keyword = keyword.as_str();
            if keyword == "properties" {
                for (name, sub) in object(value).unwrap_or_default() {
                    let chain = path.as_ref().map(|p| [p.as_slice(), &[name]].concat());
                    stack.push((chain, sub));
                }
            } else if SUBSCHEMA_ONE.contains(&keyword) {
                stack.push((None, value));
            } else if SUBSCHEMA_LIST.contains(&keyword) {
                let subs: Vec<&RawValue> = serde_json::from_str(value.get()).unwrap_or_default();
                stack.extend(subs.into_iter().map(|s| (None, s)));
            } else if SUBSCHEMA_MAP.contains(&keyword) {
                stack.extend(object(value).unwrap_or_default().into_values().map(|s| (None, s)));
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn at(path: &[&str], header: &str) -> Annotated {
        Annotated { path: path.iter().map(|s| (*s).to_owned()).collect(), header: header.into() }
    }

    #[test]
    fn annotations_are_found_along_properties_chains() {
        let schema = r#"{"type":"object","properties":{
            "region":{"type":"string","x-mcp-header":"Region"},
            "target":{"type":"object","properties":{
                "zone":{"type":"string","x-mcp-header":"Zone"},
                "deep":{"type":"object","properties":{"n":{"type":"integer","x-mcp-header":"N","default":1e400}}}}},
            "plain":{"type":"boolean"}}}"#;
        assert_eq!(
            annotations(schema).unwrap(),
            vec![at(&["region"], "Region"), at(&["target", "deep", "n"], "N"), at(&["target", "zone"], "Zone")]
        );
        assert_eq!(annotations(r#"{"type":"object"}"#).unwrap(), vec![]);
        assert_eq!(annotations("not json").unwrap(), vec![]);
        // An annotation inside a value that is not a schema (a default, an enum) is data.
        let data = r#"{"properties":{"a":{"type":"object","default":{"x-mcp-header":"X"}}}}"#;
        assert_eq!(annotations(data).unwrap(), vec![]);
    }

    #[test]
    fn every_validity_rule_is_applied() {
        let cases = [
            (r#"{"x-mcp-header":"Root","type":"string"}"#, InvalidAnnotation::Unreachable),
            (
                r#"{"properties":{"l":{"type":"array","items":{"type":"string","x-mcp-header":"I"}}}}"#,
                InvalidAnnotation::Unreachable,
            ),
            (
                r#"{"properties":{"u":{"anyOf":[{"type":"string","x-mcp-header":"U"}]}}}"#,
                InvalidAnnotation::Unreachable,
            ),
            (r#"{"$defs":{"d":{"type":"string","x-mcp-header":"D"}}}"#, InvalidAnnotation::Unreachable),
            (
                r#"{"properties":{"o":{"type":"object","additionalProperties":{"type":"string","x-mcp-header":"A"}}}}"#,
                InvalidAnnotation::Unreachable,
            ),
            (r#"{"properties":{"a":{"type":"string","x-mcp-header":7}}}"#, InvalidAnnotation::NotAString("a".into())),
            (
                r#"{"properties":{"a":{"type":"string","x-mcp-header":"Has Space"}}}"#,
                InvalidAnnotation::NotAToken("a".into(), "Has Space".into()),
            ),
            (
                r#"{"properties":{"a":{"type":"string","x-mcp-header":""}}}"#,
                InvalidAnnotation::NotAToken("a".into(), String::new()),
            ),
            (
                r#"{"properties":{"a":{"type":"number","x-mcp-header":"A"}}}"#,
                InvalidAnnotation::NotPrimitive("a".into()),
            ),
            (r#"{"properties":{"a":{"x-mcp-header":"A"}}}"#, InvalidAnnotation::NotPrimitive("a".into())),
            (
                r#"{"properties":{"a":{"type":["string","null"],"x-mcp-header":"A"}}}"#,
                InvalidAnnotation::NotPrimitive("a".into()),
            ),
            (
                r#"{"properties":{"o":{"type":"object","x-mcp-header":"O","properties":{}}}}"#,
                InvalidAnnotation::NotPrimitive("o".into()),
            ),
        ];
        for (schema, why) in cases {
            assert_eq!(annotations(schema), Err(why), "{schema}");
        }
        let twice = r#"{"properties":{"a":{"type":"string","x-mcp-header":"Region"},
            "o":{"type":"object","properties":{"b":{"type":"string","x-mcp-header":"region"}}}}}"#;
        assert!(matches!(annotations(twice), Err(InvalidAnnotation::Duplicate(..))), "{twice}");
    }

    #[test]
    fn a_huge_schema_is_refused_not_walked_forever() {
        let props: String = (0..MAX_POSITIONS + 1).map(|i| format!(r#""p{i}":{{}}"#)).collect::<Vec<_>>().join(",");
        let schema = format!(r#"{{"properties":{{{props}}}}}"#);
        assert_eq!(annotations(&schema), Err(InvalidAnnotation::TooLarge));
    }
}
