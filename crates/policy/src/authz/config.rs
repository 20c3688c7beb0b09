//! Reading ToolHive's authorization document (`{"version","type","cedar":{..}}`, JSON or YAML) into
//! plain options, refusing what cannot work and remembering what is accepted but ignored.

use serde_json::{Map, Value};

use super::error::AuthzConfigError;

/// Largest document accepted; real ones are a few kilobytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Most names `multi_valued_claims` may list.
const MAX_MULTI_VALUED_CLAIMS: usize = 64;

/// The group entity type when `group_entity_type` is unset (ToolHive's).
pub const DEFAULT_GROUP_ENTITY_TYPE: &str = "THVGroup";

/// The `cedar` section, read and checked for shape (Cedar itself checks the policies later).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CedarOptions {
    pub policies: Vec<String>,
    /// The parsed `entities_json` array (empty when unset).
    pub entities: Vec<Value>,
    pub group_claim_name: Option<String>,
    pub role_claim_name: Option<String>,
    pub group_entity_type: String,
    pub multi_valued_claims: Vec<String>,
    /// Things accepted but not acted on (unknown keys, `primary_upstream_provider`).
    pub warnings: Vec<String>,
}

/// Parses JSON (text starting with `{`) or YAML (anything else) into a JSON value.
pub(crate) fn parse_text(text: &str, origin: &str) -> Result<Value, AuthzConfigError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(AuthzConfigError::TooLarge {
            origin: origin.to_owned(),
            size: text.len(),
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    let trimmed = text.trim_start_matches('\u{feff}');
    if trimmed.trim_start().starts_with('{') {
        serde_json::from_str(trimmed).map_err(|e| json_syntax(origin, &e))
    } else {
        let mut opts = serde_saphyr::Options::default();
        // The position is reported in its own fields; a snippet would repeat the document.
        opts.with_snippet = false;
        serde_saphyr::from_str_with_options(trimmed, opts).map_err(|e| yaml_syntax(origin, &e))
    }
}

fn json_syntax(origin: &str, err: &serde_json::Error) -> AuthzConfigError {
    let (line, column) = (err.line() as u64, err.column() as u64);
    let mut message = err.to_string();
    // serde_json appends the position to its text; it is reported separately.
    if let Some(stripped) = message.strip_suffix(&format!(" at line {line} column {column}")) {
        message = stripped.to_owned();
    }
    AuthzConfigError::Syntax { origin: origin.to_owned(), format: "JSON", line, column, message }
}

fn yaml_syntax(origin: &str, err: &serde_saphyr::Error) -> AuthzConfigError {
    use serde_saphyr::MessageFormatter as _;
    let location = err.location();
    let mut inner = err;
    while let serde_saphyr::Error::WithSnippet { error, .. } | serde_saphyr::Error::AliasError { error, .. } = inner {
        inner = error;
    }
    AuthzConfigError::Syntax {
        origin: origin.to_owned(),
        format: "YAML",
        line: location.map(|l| l.line()).unwrap_or(0),
        column: location.map(|l| l.column()).unwrap_or(0),
        message: serde_saphyr::UserMessageFormatter.format_message(inner).into_owned(),
    }
}

/// Checks the envelope and reads the `cedar` section.
pub(crate) fn read_document(doc: &Value, origin: &str) -> Result<CedarOptions, AuthzConfigError> {
    let field = |field: &str, message: &str| AuthzConfigError::Field {
        origin: origin.to_owned(),
        field: field.to_owned(),
        message: message.to_owned(),
    };
    let top =
        doc.as_object().ok_or_else(|| field(".", "the document must be a mapping with version, type and cedar"))?;
    let mut warnings = unknown_keys(top, &["version", "type", "cedar"], "");

    // ToolHive requires a non-empty version and accepts any; YAML may read `1.0` as a number.
    match top.get("version") {
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(Value::Number(_)) => {}
        Some(_) => return Err(field("version", "must be a string such as \"1.0\"")),
        None => return Err(field("version", "missing; put version: \"1.0\" in the document")),
    }
    match top.get("type") {
        Some(Value::String(t)) if t == "cedarv1" => {}
        Some(Value::String(t)) if t == "httpv1" => {
            return Err(AuthzConfigError::NotSupportedYet { origin: origin.to_owned(), found: t.clone() });
        }
        Some(Value::String(t)) => {
            return Err(AuthzConfigError::UnknownType { origin: origin.to_owned(), found: t.clone() });
        }
        Some(_) => return Err(field("type", "must be a string (\"cedarv1\")")),
        None => return Err(field("type", "missing; put type: cedarv1 in the document")),
    }
    let cedar = match top.get("cedar") {
        Some(Value::Object(c)) => c,
        Some(_) => return Err(field("cedar", "must be a mapping")),
        None => return Err(field("cedar", "missing; the cedarv1 type needs a cedar section with policies")),
    };
    warnings.extend(unknown_keys(
        cedar,
        &[
            "policies",
            "entities_json",
            "group_claim_name",
            "role_claim_name",
            "group_entity_type",
            "primary_upstream_provider",
            "multi_valued_claims",
        ],
        "cedar.",
    ));

    let policies = match cedar.get("policies") {
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.as_str().map(str::to_owned).ok_or_else(|| field(&format!("cedar.policies[{i}]"), "must be a string"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Null) | None => Vec::new(),
        Some(_) => return Err(field("cedar.policies", "must be a list of policy strings")),
    };
    if policies.is_empty() {
        return Err(AuthzConfigError::NoPolicies { origin: origin.to_owned() });
    }

    let entities = match cedar.get("entities_json") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if s.trim().is_empty() => Vec::new(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(items)) => items,
            Ok(_) => return Err(entities_error(origin, "must be a JSON list of entities")),
            Err(e) => {
                let message = format!("not JSON: {e}");
                return Err(entities_error(origin, &message));
            }
        },
        // Lenient superset of ToolHive: the list itself instead of a string holding it.
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err(field("cedar.entities_json", "must be a string holding a JSON list of entities")),
    };

    let opt_string = |key: &str| -> Result<Option<String>, AuthzConfigError> {
        match cedar.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(field(&format!("cedar.{key}"), "must be a string")),
        }
    };
    let group_claim_name = opt_string("group_claim_name")?;
    let role_claim_name = opt_string("role_claim_name")?;
    let group_entity_type = opt_string("group_entity_type")?.unwrap_or_else(|| DEFAULT_GROUP_ENTITY_TYPE.to_owned());
    check_group_entity_type(&group_entity_type).map_err(|m| field("cedar.group_entity_type", &m))?;
    if let Some(provider) = opt_string("primary_upstream_provider")? {
        warnings.push(format!(
            "cedar.primary_upstream_provider ({provider:?}) is ignored: claims come from the token the client presented"
        ));
    }

    let multi_valued_claims = match cedar.get("multi_valued_claims") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_MULTI_VALUED_CLAIMS => items
            .iter()
            .enumerate()
            .map(|(i, n)| match n.as_str() {
                Some(s) if !s.is_empty() => Ok(s.to_owned()),
                _ => Err(field(&format!("cedar.multi_valued_claims[{i}]"), "must be a non-empty claim name")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Array(_)) => {
            let message = format!("lists more than {MAX_MULTI_VALUED_CLAIMS} claims");
            return Err(field("cedar.multi_valued_claims", &message));
        }
        Some(_) => return Err(field("cedar.multi_valued_claims", "must be a list of claim names")),
    };

    Ok(CedarOptions {
        policies,
        entities,
        group_claim_name,
        role_claim_name,
        group_entity_type,
        multi_valued_claims,
        warnings,
    })
}

fn entities_error(origin: &str, message: &str) -> AuthzConfigError {
    AuthzConfigError::Entities { origin: origin.to_owned(), index: None, message: message.to_owned() }
}

/// ToolHive ignores keys it does not know; so does Apiary, but it says so.
fn unknown_keys(map: &Map<String, Value>, known: &[&str], prefix: &str) -> Vec<String> {
    map.keys()
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| format!("unknown key {prefix}{k} is ignored (known keys: {})", known.join(", ")))
        .collect()
}

/// A plain Cedar identifier, not namespaced (ToolHive refuses `A::B` too).
fn check_group_entity_type(name: &str) -> Result<(), String> {
    if name.contains("::") {
        return Err(format!("{name:?} contains \"::\": namespaced entity types are not supported"));
    }
    name.parse::<cedar_policy::EntityTypeName>()
        .map(|_| ())
        .map_err(|_| format!("{name:?} is not a valid Cedar identifier"))
}
