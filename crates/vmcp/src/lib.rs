//! The virtual MCP server: many MCP backends aggregated behind one endpoint. It is an
//! upstream of the proxy's own front (DESIGN.md, "One front, many upstreams"): sessions,
//! streams, both eras, edge checks and policy layers are the proxy's; this crate supplies a
//! [`VmcpLaunch`] whose "children" are in-process instances that aggregate, route and
//! relay.
//!
//! ```text
//! config ─▶ hub (backends, rules, health) ─▶ launch ─▶ instance ─▶ aggregate (pure)
//!                                                         └──────▶ RawSession per backend
//! ```

pub mod aggregate;
pub mod config;
mod era;
pub mod health;
mod hub;
mod instance;
mod launch;
mod reload;
pub mod route_auth;
mod status;

pub use config::{ConfigError, VmcpConfig};
pub use health::HealthRegistry;
pub use hub::{BackendExchange, BackendSpec, InstanceLimits};
pub use launch::VmcpLaunch;
pub use reload::{POLL_INTERVAL, content_hash, spawn_config_watch};
pub use route_auth::{GATEWAY_TICKET_META, GatewayCaller, Grant, Refusal, RouteAuth};
pub use status::status_routes;
