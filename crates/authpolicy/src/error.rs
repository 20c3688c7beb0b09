//! Why a policy cannot be loaded. Each error names the field, so the caller can put it in the
//! route's condition; a policy that fails to load must make the route refuse traffic.
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LoadError {
    /// A field or rule kind Apiary does not evaluate (e.g.
    /// `spec.rules.authorization.x.kubernetesSubjectAccessReview`).
    #[error("unsupported AuthPolicy field {path}")]
    Unsupported { path: String },
    /// A field Apiary evaluates but whose content is wrong: a CEL syntax error, a Rego compile
    /// error, a wrong type, a missing required field.
    #[error("invalid AuthPolicy field {path}: {message}")]
    Invalid { path: String, message: String },
    /// A `sharedSecretRef` that names no Secret value.
    #[error("AuthPolicy field {path}: Secret {name} has no key {key}")]
    MissingSecret { path: String, name: String, key: String },
}

impl LoadError {
    /// The field the error is about, as a path from the object root.
    pub fn path(&self) -> &str {
        match self {
            LoadError::Unsupported { path }
            | LoadError::Invalid { path, .. }
            | LoadError::MissingSecret { path, .. } => path,
        }
    }

    pub(crate) fn invalid(path: &str, message: impl Into<String>) -> Self {
        LoadError::Invalid { path: path.to_owned(), message: message.into() }
    }
}
