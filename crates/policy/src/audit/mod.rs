//! What is recorded: one NDJSON audit event per request, in ToolHive's shape and configured by
//! ToolHive's audit document (`component`, `logFile`, `eventTypes`, `excludeEventTypes`,
//! `includeRequestData`, `includeResponseData`, `maxDataSize`).
//!
//! The proxy builds an event with [`Auditor::event`] (or [`AuditEvent::builder`]) and hands it
//! to [`Auditor::record`], which never blocks: it writes the event's line (`line`: serde_json's
//! bytes, without its generic path) into a bounded buffer that one writer task writes out in
//! batches.

mod auditor;
mod config;
mod event;
mod line;
mod stamp;

pub use crate::document::DocumentError;
pub use auditor::{Auditor, BATCH_BYTES, DROP_WARN_EVERY, FLUSH_DELAY};
pub use config::{
    AuditConfig, AuditConfigError, DEFAULT_COMPONENT, DEFAULT_MAX_DATA_SIZE, DEFAULT_QUEUE_CAPACITY, EVENT_TYPES,
    MAX_MAX_DATA_SIZE,
};
pub use event::{
    AuditEvent, Data, EventBuilder, Metadata, MetadataExtra, Outcome, Source, SourceExtra, Subjects, Target,
    TargetType, event_type,
};
