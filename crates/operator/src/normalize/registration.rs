//! Canonical view of an MCPServerRegistration: `prefix` over `toolPrefix`, default path.

use super::{Normalize, Normalized, pick};
use crate::crd::registration::MCPServerRegistrationSpec;

/// Default MCP path of a registered server.
pub const DEFAULT_PATH: &str = "/mcp";

impl Normalize for MCPServerRegistrationSpec {
    fn normalize(&self) -> Normalized<Self> {
        let mut conflicts = Vec::new();
        let mut spec = self.clone();
        spec.prefix =
            pick("spec.prefix", self.prefix.clone(), "spec.toolPrefix", self.tool_prefix.clone(), &mut conflicts);
        spec.tool_prefix = None;
        spec.path = Some(self.path.clone().unwrap_or_else(|| DEFAULT_PATH.to_string()));
        Normalized { spec, conflicts }
    }
}
