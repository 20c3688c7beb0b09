//! JSON-RPC 2.0 and MCP envelopes, with no I/O.
//!
//! Parses only what routing and policy need (kind, id, method, params, result/error) and
//! keeps everything else as the original bytes, so unknown fields, methods and future
//! revisions pass through untouched. Also: the MCP revisions and eras, the error codes,
//! and the primitives that rewrite ids, progress tokens and cancellations for a child
//! shared by many sessions, each a byte splice of the one member that changes ([`splice`]).

pub mod bridge;
pub mod codes;
pub mod envelope;
pub mod error;
pub mod mcp_header;
pub mod methods;
pub mod modern;
pub mod revision;
pub mod rewrite;
pub mod splice;

pub use envelope::{Body, Kind, Message, RequestId, parse_body};
pub use error::{ParseError, ParseErrorKind, error_response, result_response};
pub use revision::{Era, Revision};
pub use splice::SpliceError;
