//! ToolHive's audit configuration document, read unchanged: which events are recorded, where
//! they go, and how much of each request and response is kept.

use std::path::PathBuf;

use serde::Deserialize;
use serde::de::Error as _;

use crate::document::{DocumentError, line_of_word, parse_document};

/// `component` when the document sets none (ToolHive's default).
pub const DEFAULT_COMPONENT: &str = "toolhive-api";
/// `maxDataSize` when the document sets none (ToolHive's default).
pub const DEFAULT_MAX_DATA_SIZE: usize = 1024;
/// Largest `maxDataSize` accepted: one event must stay a reasonable log line.
pub const MAX_MAX_DATA_SIZE: usize = 16 * 1024 * 1024;
/// Events waiting for the writer; past this, new events are dropped and counted.
pub const DEFAULT_QUEUE_CAPACITY: usize = 4096;

/// Every event type ToolHive emits or accepts in `eventTypes` / `excludeEventTypes`.
pub const EVENT_TYPES: [&str; 15] = [
    "mcp_initialize",
    "mcp_tool_call",
    "mcp_tools_list",
    "mcp_resource_read",
    "mcp_resources_list",
    "mcp_prompt_get",
    "mcp_prompts_list",
    "mcp_notification",
    "mcp_ping",
    "mcp_logging",
    "mcp_completion",
    "mcp_roots_list_changed",
    "mcp_request",
    "sse_connection",
    "http_request",
];

/// What is audited and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// `component` of every event.
    pub component: String,
    /// Append NDJSON here (created 0600); `None`: stdout.
    pub log_file: Option<PathBuf>,
    /// Only these event types are recorded; empty: all.
    pub event_types: Vec<String>,
    /// Never these; wins over `event_types`.
    pub exclude_event_types: Vec<String>,
    /// Put the request body into `data.request`.
    pub include_request_data: bool,
    /// Put the response body into `data.response`.
    pub include_response_data: bool,
    /// Largest body (bytes) kept in `data`; larger ones are replaced by a truncation marker.
    pub max_data_size: usize,
    /// Older ToolHive documents carry `enabled`; `false` records nothing.
    pub enabled: bool,
    /// Bound of the queue between request path and writer (not in ToolHive's document).
    pub queue_capacity: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            component: DEFAULT_COMPONENT.to_owned(),
            log_file: None,
            event_types: Vec::new(),
            exclude_event_types: Vec::new(),
            include_request_data: false,
            include_response_data: false,
            max_data_size: DEFAULT_MAX_DATA_SIZE,
            enabled: true,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }
}

/// Why audit could not be configured or started.
#[derive(Debug, thiserror::Error)]
pub enum AuditConfigError {
    /// The document is not valid JSON/YAML, has an unknown key, a bad value or an unknown event type.
    // Not a `source`: the document error already says everything, and a chain would say it twice.
    #[error("audit config {0}")]
    Document(DocumentError),
    /// The log file could not be opened or created.
    #[error("audit log file {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    /// The log file exists and others may read it, or its group may write it.
    #[error("audit log file {path} has mode {mode:04o}; audit records must not be readable by others (chmod 600 it)")]
    Permissions { path: PathBuf, mode: u32 },
}

impl From<DocumentError> for AuditConfigError {
    fn from(e: DocumentError) -> Self {
        AuditConfigError::Document(e)
    }
}

/// The document as ToolHive spells it. ToolHive's files use snake_case (`event_types`); its CRDs
/// and Apiary's docs use camelCase (`eventTypes`); both are accepted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuditConfig {
    #[serde(default)]
    component: Option<String>,
    #[serde(default, rename = "logFile", alias = "log_file")]
    log_file: Option<String>,
    #[serde(default, rename = "eventTypes", alias = "event_types")]
    event_types: Option<Vec<String>>,
    #[serde(default, rename = "excludeEventTypes", alias = "exclude_event_types")]
    exclude_event_types: Option<Vec<String>>,
    #[serde(default, rename = "includeRequestData", alias = "include_request_data")]
    include_request_data: Option<bool>,
    #[serde(default, rename = "includeResponseData", alias = "include_response_data")]
    include_response_data: Option<bool>,
    #[serde(default, rename = "maxDataSize", alias = "max_data_size")]
    max_data_size: Option<DataSize>,
    /// Older ToolHive documents.
    #[serde(default)]
    enabled: Option<bool>,
    /// ToolHive's RFC 8693 delegation-chain bound: accepted, not used (no delegation chain yet).
    #[serde(default, rename = "maxDelegationDepth", alias = "max_delegation_depth")]
    _max_delegation_depth: Option<u32>,
}

/// `maxDataSize`, bounded while parsing.
struct DataSize(usize);

impl<'de> Deserialize<'de> for DataSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        match usize::try_from(n) {
            Ok(n) if n <= MAX_MAX_DATA_SIZE => Ok(DataSize(n)),
            _ => Err(D::Error::custom(format!("maxDataSize {n} is larger than {MAX_MAX_DATA_SIZE}"))),
        }
    }
}

impl AuditConfig {
    /// Reads ToolHive's JSON (or YAML) audit document; `origin` names the file in errors, which
    /// give the line and the reason. Unknown keys are refused (a typo would silently audit less).
    pub fn from_text(text: &str, origin: &str) -> Result<AuditConfig, AuditConfigError> {
        let raw: RawAuditConfig = parse_document(text, origin)?;
        raw.into_config(origin, Some(text))
    }

    /// Reads the document from an already parsed value (RunConfig's `policy.audit`). A value
    /// carries no lines, so errors give the reason only.
    pub fn from_value(v: &serde_json::Value, origin: &str) -> Result<AuditConfig, AuditConfigError> {
        let raw = RawAuditConfig::deserialize(v).map_err(|e| DocumentError::new(origin, None, e.to_string()))?;
        raw.into_config(origin, None)
    }
}

impl RawAuditConfig {
    /// Checks the event type names (`text`, when there is one, locates a bad name's line).
    fn into_config(self, origin: &str, text: Option<&str>) -> Result<AuditConfig, AuditConfigError> {
        for name in self.event_types.iter().chain(&self.exclude_event_types).flatten() {
            if !EVENT_TYPES.contains(&name.as_str()) {
                let line = text.and_then(|t| line_of_word(t, name));
                let reason = format!("unknown event type `{name}`; known: {}", EVENT_TYPES.join(", "));
                return Err(DocumentError::new(origin, line, reason).into());
            }
        }
        let names = |v: Option<Vec<String>>| v.unwrap_or_default();
        let d = AuditConfig::default();
        Ok(AuditConfig {
            component: self.component.filter(|c| !c.is_empty()).unwrap_or(d.component),
            log_file: self.log_file.filter(|f| !f.is_empty()).map(PathBuf::from),
            event_types: names(self.event_types),
            exclude_event_types: names(self.exclude_event_types),
            include_request_data: self.include_request_data.unwrap_or(false),
            include_response_data: self.include_response_data.unwrap_or(false),
            max_data_size: self.max_data_size.map_or(d.max_data_size, |s| s.0),
            enabled: self.enabled.unwrap_or(true),
            queue_capacity: d.queue_capacity,
        })
    }
}

impl AuditConfig {
    /// Whether events of this type are recorded: `excludeEventTypes` wins over `eventTypes`.
    pub fn wants(&self, event_type: &str) -> bool {
        self.enabled
            && !self.exclude_event_types.iter().any(|t| t == event_type)
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
    }
}
