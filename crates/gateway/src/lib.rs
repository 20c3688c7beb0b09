//! What `apiary gateway` serves (seed 004's MCP gateway), testable without a cluster: given the
//! registrations' snapshots (`apiary_operator::gateway`) and an [`Enforcer`] holding the routes'
//! AuthPolicies, one aggregated `/mcp` — the vMCP behind the proxy's own front, each server's
//! tools behind its literal prefix — where every routed request meets its route's policy.
//!
//! ```text
//! client ─▶ edge ─▶ middleware (tools/call decided: 401/403/503 answered here; a ticket
//!                   naming the caller and its grant spliced into params._meta)
//!        ─▶ front ─▶ vMCP instance (ticket redeemed: tools/list filtered by the policy,
//!                    the grant's Authorization set on the routed call, anything ungranted
//!                    decided again) ─▶ backend
//! ```
//!
//! [`Enforcer`]: apiary_authpolicy::Enforcer

pub mod auth;
pub mod backends;
pub mod middleware;
mod serve;
pub mod status;

pub use serve::{GatewayError, GatewayOptions, serve};
