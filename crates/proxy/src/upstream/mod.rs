//! What stands behind the front: stdio children (`stdio`, and `mux`, which routes what one
//! child sends to whatever is attached to it) and the bridge that serves a sessionless
//! request over a short session of its own to an HTTP server. Imports nothing above it.

pub mod mux;
pub mod stateless_bridge;
pub mod stdio;
