//! The `x-mcp-header` annotations of the shared child's tools (SEP-2243), per child
//! generation: which arguments of which tool a 2026-07-28 client mirrors in `Mcp-Param-*`
//! headers. Bounded by [`MAX_TOOLS`]. Filled and read by `param_headers`.

use std::collections::HashMap;
use std::sync::Mutex;

use apiary_protocol::modern::{self, ParamHeader};

/// Most tools whose annotations are kept (a list past this is cut, and tools past it are
/// then not checked).
pub const MAX_TOOLS: usize = 4096;

/// Per tool, its mirrored arguments.
type Table = HashMap<String, Vec<ParamHeader>>;

/// What the child serving now declared: per tool, its mirrored arguments.
#[derive(Default)]
pub struct ToolHeaders {
    /// The child generation the table describes, and the table.
    known: Mutex<Option<(u64, Table)>>,
}

impl ToolHeaders {
    /// Records the tools of a `tools/list` result (JSON text) from child `generation`.
    pub fn learn(&self, generation: u64, result: &str) {
        let tools = modern::param_headers_of_tools(result);
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let table = match &mut *known {
            Some((g, table)) if *g == generation => table,
            slot => &mut slot.insert((generation, HashMap::new())).1,
        };
        for (name, params) in tools {
            if table.len() >= MAX_TOOLS && !table.contains_key(&name) {
                tracing::warn!(max = MAX_TOOLS, "the child lists too many tools: the rest get no Mcp-Param-* check");
                break;
            }
            table.insert(name, params);
        }
    }

    /// The mirrored arguments of `tool` on child `generation`: `None` when nothing is known
    /// about that child yet; an empty list for a tool with none (or not listed).
    pub fn of(&self, generation: u64, tool: &str) -> Option<Vec<ParamHeader>> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        match &*known {
            Some((g, table)) if *g == generation => Some(table.get(tool).cloned().unwrap_or_default()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_describes_one_child_generation() {
        let headers = ToolHeaders::default();
        assert_eq!(headers.of(1, "a"), None);
        headers.learn(1, r#"{"tools":[{"name":"a","inputSchema":{"properties":{"r":{"x-mcp-header":"R"}}}}]}"#);
        assert_eq!(headers.of(1, "a"), Some(vec![ParamHeader { member: "r".into(), header: "R".into() }]));
        assert_eq!(headers.of(1, "b"), Some(vec![]), "an unlisted tool has nothing to check");
        assert_eq!(headers.of(2, "a"), None, "a new child is asked again");
        headers.learn(2, r#"{"tools":[{"name":"b"}]}"#);
        assert_eq!(headers.of(2, "a"), Some(vec![]));
    }
}
