//! The source of backends of `apiary gateway` (seed 004): it watches MCPServerRegistrations in
//! every namespace and the HTTPRoutes and Services they lead to, resolves each registration
//! exactly as the registration reconciler does ([`crate::registration::resolve`]), keeps those
//! whose route attaches to the served Gateway (a `parentRefs` entry names it and one of its
//! listeners admits the route: [`listeners`], [`select`]), and publishes the result as a
//! [`Snapshot`] whenever it changes. The caller turns a snapshot into the running aggregation
//! (the vMCP's live reload), so a registration added or removed changes `tools/list` without a
//! restart. It writes the served Gateway's and its HTTPRoutes' status conditions ([`status`]);
//! registration status is the reconciler's.

mod follow;
pub mod listeners;
pub mod policies;
pub mod select;
pub mod status;
mod watches;

pub use follow::{RESYNC, run};
pub use select::{Backend, Skipped};

/// What the gateway serves now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The registrations served, ordered by namespace and name.
    pub backends: Vec<Backend>,
    /// The registrations not served, and why.
    pub skipped: Vec<Skipped>,
    /// False until every watch has listed its objects once.
    pub synced: bool,
}
