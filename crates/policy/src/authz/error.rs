//! Why an authorization document was refused, with enough position to find the mistake: the
//! document's line for a JSON/YAML syntax error, the policy index and the line inside it for Cedar.

use thiserror::Error;

/// A refused authorization document. Every variant starts with the document's origin (a file path
/// or `authzConfig`).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AuthzConfigError {
    /// The text is not JSON or YAML.
    #[error("{origin}: {format} syntax error at line {line}, column {column}: {message}")]
    Syntax { origin: String, format: &'static str, line: u64, column: u64, message: String },

    /// The document is too large to be a configuration file.
    #[error("{origin}: the document is {size} bytes, more than the {limit}-byte limit")]
    TooLarge { origin: String, size: usize, limit: usize },

    /// A field is missing or has the wrong shape.
    #[error("{origin}: {field}: {message}")]
    Field { origin: String, field: String, message: String },

    /// `type` names an authorizer this build does not have.
    #[error("{origin}: unknown authorizer type {found:?}; the supported type is \"cedarv1\"")]
    UnknownType { origin: String, found: String },

    /// `type` names a ToolHive authorizer Apiary does not implement yet.
    #[error("{origin}: authorizer type {found:?} is not supported yet; use \"cedarv1\"")]
    NotSupportedYet { origin: String, found: String },

    /// `cedar.policies` is empty: ToolHive refuses this too, and it is nearly always a mistake.
    #[error(
        "{origin}: cedar.policies is empty; at least one policy is required (with none, every request would be denied)"
    )]
    NoPolicies { origin: String },

    /// A policy does not parse. `index` counts from 0 and matches the policy's id `policy<index>`;
    /// `line` and `column` count from 1 inside that policy's text.
    #[error("{origin}: policy {index}, line {line}, column {column}: {message}")]
    Policy { origin: String, index: usize, line: usize, column: usize, message: String },

    /// A policy does not parse and Cedar gave no position.
    #[error("{origin}: policy {index}: {message}")]
    PolicyNoPosition { origin: String, index: usize, message: String },

    /// `cedar.entities_json` is not a valid Cedar entity list. `index` counts from 0.
    #[error("{origin}: cedar.entities_json{}: {message}", .index.map(|i| format!(", entity {i}")).unwrap_or_default())]
    Entities { origin: String, index: Option<usize>, message: String },
}
