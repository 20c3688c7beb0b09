//! Client sessions.

pub mod error;
pub mod events;
pub mod placement;
pub mod session;
pub mod sse;

pub use error::SessionError;
