//! What a client declared about itself: the capabilities a server may ask it through, and
//! the log levels it can set. A room of its own below the sessions and the multiplexer, since
//! both eras read it (a legacy `initialize`, a 2026-07-28 request's own declaration).

/// Client capabilities that let a server ask its client something.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCaps {
    pub sampling: bool,
    pub elicitation: bool,
    pub roots: bool,
}

impl ClientCaps {
    /// Reads `params.capabilities` of an `initialize`.
    pub fn from_initialize(params: &serde_json::Value) -> Self {
        let caps = params.get("capabilities");
        let has = |k: &str| caps.and_then(|c| c.get(k)).is_some_and(|v| !v.is_null());
        ClientCaps { sampling: has("sampling"), elicitation: has("elicitation"), roots: has("roots") }
    }

    pub fn any(&self) -> bool {
        self.sampling || self.elicitation || self.roots
    }

    /// Whether a server→client request with this method may be sent to such a client.
    pub fn allows(&self, method: &str) -> bool {
        match method {
            "sampling/createMessage" => self.sampling,
            "elicitation/create" => self.elicitation,
            "roots/list" => self.roots,
            _ => true,
        }
    }
}

/// RFC 5424 levels as MCP names them, most verbose first.
const LEVELS: [&str; 8] = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/// The rank of a log level (0 = debug); `None` for an unknown name.
pub fn level_rank(name: &str) -> Option<u8> {
    LEVELS.iter().position(|l| *l == name).and_then(|i| u8::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_and_levels() {
        let c = ClientCaps::from_initialize(&serde_json::json!({"capabilities": {"sampling": {}, "roots": null}}));
        assert!(c.sampling && !c.roots && !c.elicitation && c.any());
        assert!(c.allows("sampling/createMessage") && !c.allows("elicitation/create") && c.allows("ping"));
        assert!(!ClientCaps::from_initialize(&serde_json::json!({})).any());
        assert_eq!(level_rank("debug"), Some(0));
        assert_eq!(level_rank("emergency"), Some(7));
        assert_eq!(level_rank("loud"), None);
    }
}
