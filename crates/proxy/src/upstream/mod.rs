//! Upstreams.

pub mod mux;
pub mod stateless_bridge;
pub mod stdio;
