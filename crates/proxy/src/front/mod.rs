//! The HTTP front: what MCP clients talk to. The handlers of each transport (`streamable`,
//! `legacy_sse`, and the reverse proxy of an HTTP upstream), what they share (`state`,
//! `dispatch`, `call`, `edge`), and `refuse`, the one place the errors of the layers below
//! become HTTP answers. The only layer that sees `Refusal` besides the guard. `modern` is the
//! 2026-07-28 era's handler, a sibling of `streamable` chosen per POST; `capable` and
//! `input_bridge` bridge its requests to a legacy child's server→client requests, `legacy_listen` its
//! listen streams to a legacy child's notifications; `legacy_bridge` serves legacy sessions of a
//! 2026-07-28-only child (its table of sessions is `bridged`, `sessionless_bridge` its requests of
//! no session), `http_bridge` those of a 2026-07-28-only HTTP upstream (its era probe is
//! `http_era`, its 2024-11-05 `/sse` front `http_bridge_sse`); `legacy_rounds` is what the two
//! share, `bridged_sse` their handling of a 2024-11-05 session's message.

pub mod bridged;
pub mod bridged_sse;
pub mod call;
pub mod capable;
pub mod dispatch;
pub mod edge;
pub mod http_bridge;
pub mod http_bridge_sse;
pub mod http_era;
pub mod input_bridge;
pub mod input_park;
pub mod legacy_bridge;
pub mod legacy_listen;
pub mod legacy_rounds;
pub mod legacy_sse;
pub mod modern;
pub mod param_headers;
pub mod refuse;
pub mod reverse_proxy;
pub mod sessionless_bridge;
pub mod state;
pub mod streamable;
pub mod tool_headers;
