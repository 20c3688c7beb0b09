//! One running proxy, assembled from a `RunConfig`: the HTTP listener with its edge checks,
//! the Streamable HTTP front, and the upstream: stdio children (through a `Launch`) or an
//! HTTP server reached as a transparent reverse proxy.
//!
//! ```text
//! client ─HTTP─▶ edge (host/origin, method, size, content-type, accept) ─▶ parse once
//!        ─▶ session router ─▶ child mux (id rewrite) ─▶ child stdin … stdout ─▶ back
//! ```
//!
//! Modules depend one way, down (README.md, "Module layers"; `tests/module_graph.rs`
//! keeps it so):
//!
//! ```text
//! server ─▶ front/ (streamable, modern, legacy_sse, dispatch, call, state, edge, refuse, reverse_proxy)
//!        ─▶ health, guard/ ─▶ telemetry/
//!        ─▶ sessions/ (session table, events, sse, placement; SessionError)
//!        ─▶ upstream/ (mux, stdio/ with StdioError, stateless_bridge)
//!        ─▶ client, answer, status (leaves; answer's Refusal is the front's alone)
//! ```

mod answer;
mod client;
mod front;
mod guard;
mod health;
mod server;
mod sessions;
mod status;
mod telemetry;
mod upstream;

pub use guard::GuardError;
pub use server::{McpLayer, ProxyHandle, StartError, StartExtras, start, start_with, start_with_routes};
pub use status::{RestartPlan, UpstreamState, UpstreamStatus};
pub use telemetry::{MAX_TOOL_LABELS, NO_METHOD, TracingError, default_service_name};
