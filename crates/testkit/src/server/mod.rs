//! Apiary's fixture MCP server: everything the official conformance suite's server scenarios
//! call for (requirement set 2025-11-25), plus fast tools for load and crash-recovery tests.
//!
//! Serve it over stdio with [`serve_stdio`] (or any byte streams with [`serve_io`]) or over
//! Streamable HTTP at `/mcp` with [`serve_http`]. The `apiary-testkit-server` binary wraps both.
//!
//! Tools: the conformance `test_*` tools (text, image, audio, embedded resource, mixed content,
//! logging, error, progress, sampling, elicitation, SEP-1034 defaults, SEP-1330 enums,
//! `json_schema_2020_12_tool`, `test_reconnection`), plus `echo`, `sleep`, `pid`, `crash` (exit
//! status 3), `touch_resource` and `add_tool` (adds a tool to this connection's list only, and
//! sends `notifications/tools/list_changed`). Resources: `test://static-text`, `test://static-binary`,
//! `test://watched-resource` (subscribable) and the template `test://template/{id}/data`.
//! Prompts: `test_simple_prompt`, `test_prompt_with_arguments`,
//! `test_prompt_with_embedded_resource`, `test_prompt_with_image`. For 2026-07-28 clients, the
//! `test_input_required_result_*` tools and prompt answer with an `InputRequiredResult` and
//! complete on the retry carrying the input (SEP-2322, module `mrtr`), and the tasks
//! extension's tools and `tasks/*` methods (SEP-2663, module `tasks`), the stateless
//! diagnostics and `subscriptions/listen` (SEP-2575, module `stateless`), and
//! `test_custom_header`, whose argument an `Mcp-Param-Region` header mirrors (SEP-2243), and
//! `test_custom_header_nested`, whose nested `target.zone` an `Mcp-Param-Zone` header mirrors.

mod dynamic;
mod elicitation;
mod fixtures;
mod handler;
mod http;
mod modern_asks;
mod mrtr;
mod param_headers;
mod prompts;
mod raw_echo;
mod resources;
mod sessions;
mod stateless;
mod stdio;
mod tasks;
mod tools;

pub use handler::{FixtureServer, SERVER_NAME};
pub use http::{HttpServer, serve_http};
pub use raw_echo::{
    RAW_ECHO_HISTORY, RAW_ECHO_PROGRESS, RAW_ECHO_SESSION, RAW_ECHO_TAIL, RAW_ECHO_TOOL, RawEcho, raw_echo_router,
    serve_raw_echo_io, serve_raw_echo_stdio,
};
pub use stdio::{serve_io, serve_stdio};
pub use tools::CRASH_EXIT_CODE;

/// How the fixture server behaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// Answer only the legacy revisions (2024-11-05 through 2025-11-25) through `initialize`,
    /// and refuse `server/discover`.
    pub legacy_only: bool,
    /// Serve only 2026-07-28: `initialize` is refused with -32022 listing the one version
    /// served (a modern-only server, mcp-spec-notes.md §2.15); everything else as usual.
    pub modern_only: bool,
    /// Behave as a server of this one legacy revision (`2024-11-05` … `2025-11-25`): answer
    /// `initialize` with it whatever the client asked for, and, like every legacy server,
    /// refuse `server/discover` and offer no tasks extension. One of [`LEGACY_REVISIONS`].
    pub protocol_version: Option<&'static str>,
    /// Over HTTP, accept any `Host` header. By default only loopback names are accepted
    /// (DNS-rebinding protection), which suits a fixture bound to loopback; a fixture reached
    /// by another name (a container's service name, say) needs this.
    pub allow_any_host: bool,
}

/// The revisions `--protocol-version` can pin, oldest first.
pub const LEGACY_REVISIONS: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

/// The pinnable revision spelled `name`, if it is one of [`LEGACY_REVISIONS`].
pub fn legacy_revision(name: &str) -> Option<&'static str> {
    LEGACY_REVISIONS.iter().copied().find(|r| *r == name)
}

impl ServerOptions {
    /// Whether only legacy revisions are served (`--legacy-only`, or a pinned revision).
    pub fn legacy(&self) -> bool {
        self.legacy_only || self.protocol_version.is_some()
    }
}

/// Why the fixture server could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding or serving the socket, or reading stdio, failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The MCP handshake with the client failed.
    #[error("MCP initialization failed: {0}")]
    Initialize(String),
    /// The server task ended abnormally.
    #[error("server task failed: {0}")]
    Task(String),
}
