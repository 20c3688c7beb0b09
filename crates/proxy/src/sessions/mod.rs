//! Client sessions.

pub mod events;
pub mod placement;
pub mod session;
