//! Where MCP servers run on this machine, and what Apiary remembers about them.
//!
//! - [`process`]: a [`Launch`](apiary_transport::launch::Launch) for local programs (npx, uvx, any
//!   command), each in its own process group so a whole tree dies together.
//! - [`state`]: workload state under the XDG state directory (RunConfigs, status records, logs),
//!   always written atomically.
//! - [`secrets`]: the `encrypted` and `environment` secrets providers behind `apiary secret` and
//!   `apiary run --secret`.
//! - [`log`]: size-capped log files that rotate.
//! - [`pid`]: liveness checks and signals for process ids found in state files.
//! - [`clients`]: MCP clients' config files that `apiary client` keeps in sync with workloads.
//! - [`clock`]: wall-clock timestamps for records.
//! - [`inbound`]: which HTTP servers are reached through a Unix socket (they listen inside a
//!   private network namespace), and the readiness probe through it.
//! - [`health`]: health-check settings (ToolHive's variables) and the running/unhealthy verdict.
//! - `container` (feature `containers`): a [`Launch`](apiary_transport::launch::Launch) that runs an
//!   image as a hardened container through the Docker Engine API (Docker or Podman).
//! - `kubernetes` (feature `kubernetes`): a [`Launch`](apiary_transport::launch::Launch) that runs an
//!   image as a StatefulSet and attaches to its pod's stdio.

pub mod clients;
pub mod clock;
#[cfg(feature = "containers")]
pub mod container;
pub mod groups;
pub mod health;
pub mod inbound;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod log;
pub mod pid;
pub mod ports;
pub mod process;
pub mod sandbox;
pub mod secrets;
pub mod state;
