//! Client sessions.

pub mod error;
pub mod events;
pub mod placement;
pub mod session;

pub use error::SessionError;
