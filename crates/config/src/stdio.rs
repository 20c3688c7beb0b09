//! How sessions of a stdio server map onto child processes.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default cap on per-session children.
pub const DEFAULT_MAX_SESSION_CHILDREN: u32 = 32;
/// Largest accepted `stdio.maxSessionChildren`.
pub const MAX_SESSION_CHILDREN: u32 = 16_384;

/// Session-to-child mapping for stdio servers (see DESIGN.md, `--stdio-mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StdioMode {
    /// One shared child for sessions that declared no client capabilities; a child of its own for each
    /// session that declared sampling, elicitation or roots, up to `maxSessionChildren`.
    #[default]
    Auto,
    /// Every session shares one child.
    Shared,
    /// One child per session, up to `maxSessionChildren`; then new sessions are refused.
    PerSession,
}

impl StdioMode {
    /// The word used in files and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            StdioMode::Auto => "auto",
            StdioMode::Shared => "shared",
            StdioMode::PerSession => "per-session",
        }
    }
}

impl fmt::Display for StdioMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings for stdio servers (ignored for HTTP transports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct StdioConfig {
    /// How sessions map onto children.
    pub mode: StdioMode,
    /// Most children started for individual sessions at once (1–16384).
    #[serde(deserialize_with = "crate::number::u32")]
    #[schemars(range(min = 1, max = MAX_SESSION_CHILDREN))]
    pub max_session_children: u32,
}

impl Default for StdioConfig {
    fn default() -> Self {
        StdioConfig { mode: StdioMode::Auto, max_session_children: DEFAULT_MAX_SESSION_CHILDREN }
    }
}
