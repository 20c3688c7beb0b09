//! Client sessions, below the front and above the children: the session table with its
//! bound, idle TTL and event logs, the 2024-11-05 stream sessions, and the placement of a
//! session onto a child. Knows nothing of HTTP: it refuses with [`SessionError`].

pub mod error;
pub mod events;
pub mod placement;
pub mod session;
pub mod sse;

pub use error::SessionError;
