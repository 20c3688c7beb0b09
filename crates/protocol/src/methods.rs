//! MCP method names the proxy treats specially, grouped by what they mean for routing.

pub const INITIALIZE: &str = "initialize";
pub const INITIALIZED: &str = "notifications/initialized";
pub const PING: &str = "ping";
pub const CANCELLED: &str = "notifications/cancelled";
pub const PROGRESS: &str = "notifications/progress";
pub const MESSAGE: &str = "notifications/message";
pub const RESOURCES_UPDATED: &str = "notifications/resources/updated";
pub const SET_LEVEL: &str = "logging/setLevel";
pub const SUBSCRIBE: &str = "resources/subscribe";
pub const UNSUBSCRIBE: &str = "resources/unsubscribe";
pub const TOOLS_LIST: &str = "tools/list";
pub const TOOLS_CALL: &str = "tools/call";
pub const PROMPTS_LIST: &str = "prompts/list";
pub const PROMPTS_GET: &str = "prompts/get";
pub const RESOURCES_LIST: &str = "resources/list";
pub const RESOURCES_READ: &str = "resources/read";
pub const SERVER_DISCOVER: &str = "server/discover";
/// 2026-07-28: a long-lived request whose stream carries the notifications asked for.
pub const SUBSCRIPTIONS_LISTEN: &str = "subscriptions/listen";

/// Requests a server sends to its client (legacy eras).
pub const SERVER_TO_CLIENT_REQUESTS: [&str; 3] = ["sampling/createMessage", "elicitation/create", "roots/list"];

/// Legacy requests that only make sense inside a session (bad-input.md, row 12).
pub fn needs_session(method: &str) -> bool {
    matches!(method, SUBSCRIBE | UNSUBSCRIBE | SET_LEVEL)
}

/// `*/list_changed` notifications go to every session.
pub fn is_list_changed(method: &str) -> bool {
    method.starts_with("notifications/") && method.ends_with("/list_changed")
}
