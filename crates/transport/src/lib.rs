//! The wire: stdio framing for child processes, Streamable HTTP and SSE pieces, and an
//! MCP HTTP client. No policy and no routing lives here.

pub mod client;
pub mod launch;
pub mod sse;
pub mod stdio;
