//! The HTTP front: what MCP clients talk to.

pub mod call;
pub mod dispatch;
pub mod edge;
pub mod legacy_sse;
pub mod refuse;
pub mod reverse_proxy;
pub mod state;
pub mod streamable;
