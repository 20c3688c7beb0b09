//! Which tools a client sees and under which names: ToolHive's `--tools` filter and
//! `--tools-override` renames, turned into two questions the proxy asks per message: what
//! becomes of a server's tool in a list ([`ToolPolicy::fate`]), and which server tool a client's
//! call means ([`ToolPolicy::resolve_call`]).

use std::collections::{BTreeMap, BTreeSet};

use apiary_config::{ToolOverride, ToolsConfig};
use serde::Deserialize;

use crate::document::{DocumentError, line_of_word, parse_document};

/// What a client sees of one list item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemFate {
    /// Unchanged.
    Keep,
    /// Left out of the list.
    Drop,
    /// Shown with a new name and/or description (`None`: that member stays as it is).
    Change { name: Option<String>, description: Option<String> },
}

/// The client named a tool it may not call: filtered out, or the original name of a tool that
/// was renamed. The proxy answers as if the tool did not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("tool not found")]
pub struct Hidden;

impl From<DocumentError> for ToolsConfigError {
    fn from(e: DocumentError) -> Self {
        ToolsConfigError::Document(e)
    }
}

/// Why a filter or override set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolsConfigError {
    /// The tools-override file is unreadable, or one of its entries is refused (with its line).
    // Not a `source`: the document error already says everything, and a chain would say it twice.
    #[error("tools override {0}")]
    Document(DocumentError),
    #[error("the tool filter has an empty name")]
    EmptyFilterName,
    #[error("a tool override has an empty tool name")]
    EmptyOriginalName,
    /// ToolHive refuses an override that changes nothing.
    #[error("the override of tool `{original}` sets neither a name nor a description")]
    NothingOverridden { original: String },
    /// Two tools would be shown, and called, under one name.
    #[error("tools `{first}` and `{second}` are both renamed to `{name}`")]
    DuplicateName { name: String, first: String, second: String },
}

impl ToolsConfigError {
    /// The word that locates this error in an override file.
    fn word(&self) -> Option<&str> {
        match self {
            ToolsConfigError::NothingOverridden { original } => Some(original),
            ToolsConfigError::DuplicateName { second, .. } => Some(second),
            _ => None,
        }
    }
}

/// The filter and overrides of one proxy, ready to answer per message.
#[derive(Debug, Clone, Default)]
pub struct ToolPolicy {
    /// Names (the server's or the client-visible one) a tool must have to be seen. Empty: all.
    filter: BTreeSet<String>,
    /// Server name → client name, only where they differ.
    renamed: BTreeMap<String, String>,
    /// Client name → server name (the reverse of `renamed`).
    back: BTreeMap<String, String>,
    /// Server name → description clients see.
    descriptions: BTreeMap<String, String>,
}

impl ToolPolicy {
    /// Checks and indexes a filter and overrides. An override's empty `name` or `description`
    /// means "unchanged" (as in ToolHive). Refused: an empty filter entry or tool name, an
    /// override that changes nothing, and two tools renamed to the same name.
    pub fn new(cfg: &ToolsConfig) -> Result<ToolPolicy, ToolsConfigError> {
        let mut policy = ToolPolicy::default();
        for name in &cfg.filter {
            if name.is_empty() {
                return Err(ToolsConfigError::EmptyFilterName);
            }
            policy.filter.insert(name.clone());
        }
        check_overrides(&cfg.overrides)?;
        for (original, ov) in &cfg.overrides {
            if let Some(new) = nonempty(&ov.name).filter(|n| *n != original) {
                policy.renamed.insert(original.clone(), new.to_owned());
                policy.back.insert(new.to_owned(), original.clone());
            }
            if let Some(d) = nonempty(&ov.description) {
                policy.descriptions.insert(original.clone(), d.to_owned());
            }
        }
        Ok(policy)
    }

    /// True when neither a filter nor an override is set: lists and calls pass untouched.
    pub fn is_empty(&self) -> bool {
        self.filter.is_empty() && self.renamed.is_empty() && self.descriptions.is_empty()
    }

    /// A client's tool name → the server's name: `Ok(None)` = unchanged, `Ok(Some(orig))` =
    /// renamed back, `Err(Hidden)` = filtered out, or the original name of a renamed tool.
    pub fn resolve_call(&self, client_name: &str) -> Result<Option<&str>, Hidden> {
        if let Some(original) = self.back.get(client_name) {
            return if self.passes(client_name, original) { Ok(Some(original)) } else { Err(Hidden) };
        }
        if self.renamed.contains_key(client_name) || !self.passes(client_name, client_name) {
            return Err(Hidden);
        }
        Ok(None)
    }

    /// What a client sees of the server's tool `server_name`. A server tool whose own name
    /// another tool was renamed to is dropped: the client's name means the renamed one.
    pub fn fate(&self, server_name: &str) -> ItemFate {
        let new_name = self.renamed.get(server_name);
        if new_name.is_none() && self.back.contains_key(server_name) {
            return ItemFate::Drop;
        }
        let shown = new_name.map_or(server_name, String::as_str);
        if !self.passes(shown, server_name) {
            return ItemFate::Drop;
        }
        let description = self.descriptions.get(server_name).cloned();
        if new_name.is_none() && description.is_none() {
            return ItemFate::Keep;
        }
        ItemFate::Change { name: new_name.cloned(), description }
    }

    /// The filter names tools by what clients see (ToolHive's rule) or by the server's name
    /// (Apiary's config docs); either one admits the tool.
    fn passes(&self, shown: &str, server_name: &str) -> bool {
        self.filter.is_empty() || self.filter.contains(shown) || self.filter.contains(server_name)
    }
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

fn check_overrides(overrides: &BTreeMap<String, ToolOverride>) -> Result<(), ToolsConfigError> {
    let mut targets: BTreeMap<&str, &str> = BTreeMap::new();
    for (original, ov) in overrides {
        if original.is_empty() {
            return Err(ToolsConfigError::EmptyOriginalName);
        }
        if nonempty(&ov.name).is_none() && nonempty(&ov.description).is_none() {
            return Err(ToolsConfigError::NothingOverridden { original: original.clone() });
        }
        // A tool keeps its own name when not renamed; two tools must not end up sharing one.
        let shown = nonempty(&ov.name).unwrap_or(original);
        if let Some(first) = targets.insert(shown, original) {
            return Err(ToolsConfigError::DuplicateName {
                name: shown.to_owned(),
                first: first.to_owned(),
                second: original.clone(),
            });
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverridesFile {
    #[serde(rename = "toolsOverride")]
    tools_override: Option<BTreeMap<String, ToolOverride>>,
}

/// ToolHive's `--tools-override` file: `{"toolsOverride": {"orig": {"name": "new",
/// "description": "..."}}}` (JSON or YAML). Errors name `origin`, the line and the reason.
pub fn parse_overrides_file(text: &str, origin: &str) -> Result<BTreeMap<String, ToolOverride>, ToolsConfigError> {
    let file: OverridesFile = parse_document(text, origin)?;
    let Some(overrides) = file.tools_override else {
        return Err(DocumentError::new(origin, None, "missing `toolsOverride`").into());
    };
    check_overrides(&overrides).map_err(|e| {
        let line = e.word().and_then(|w| line_of_word(text, w));
        DocumentError::new(origin, line, e.to_string())
    })?;
    Ok(overrides)
}
