//! stdio upstreams: one child process speaking newline-delimited JSON-RPC, restarted when
//! it dies. [`conn`] multiplexes callers onto one live child; [`slot`] keeps a child alive
//! across crashes and initializes each new one before anything is forwarded to it;
//! [`error`] says why either could not (never in HTTP terms: that is the front's job).

pub mod conn;
pub mod error;
pub mod slot;

pub use conn::{ChildConn, Delivery, Unsolicited, UnsolicitedSink};
pub use error::StdioError;
pub use slot::{ChildSlot, SlotEvent, SlotOptions, supervise_process};
