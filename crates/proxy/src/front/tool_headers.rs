//! The `x-mcp-header` annotations of the shared child's tools (SEP-2243), per child
//! generation: which arguments of which tool a 2026-07-28 client mirrors in `Mcp-Param-*`
//! headers. Bounded by [`MAX_TOOLS`]. Filled and read by `param_headers`. A table learnt
//! only from `tools/list` pages that passed through may lack tools of later pages; it is
//! complete once the proxy has listed every page itself.

use std::collections::HashMap;
use std::sync::Mutex;

use apiary_protocol::modern::{self, ParamHeader};

/// Most tools whose annotations are kept (a list past this is cut, and tools past it are
/// then not checked).
pub const MAX_TOOLS: usize = 4096;

/// Per tool, its mirrored arguments.
type Table = HashMap<String, Vec<ParamHeader>>;

/// What one child generation is known to have declared.
struct Known {
    generation: u64,
    tools: Table,
    /// Every page of the child's list was read: a tool not in `tools` has no annotations.
    complete: bool,
}

/// What the child serving now declared: per tool, its mirrored arguments.
#[derive(Default)]
pub struct ToolHeaders {
    known: Mutex<Option<Known>>,
    /// Held while the child's list is fetched, so concurrent calls fetch it once.
    pub(crate) fetching: tokio::sync::Mutex<()>,
}

impl ToolHeaders {
    fn known(&self) -> std::sync::MutexGuard<'_, Option<Known>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the tools of a `tools/list` result (JSON text) from child `generation`.
    pub fn learn(&self, generation: u64, result: &str) {
        let tools = modern::param_headers_of_tools(result);
        let mut known = self.known();
        let table = match &mut *known {
            Some(k) if k.generation == generation => &mut k.tools,
            slot => &mut slot.insert(Known { generation, tools: HashMap::new(), complete: false }).tools,
        };
        for (name, params) in tools {
            if table.len() >= MAX_TOOLS && !table.contains_key(&name) {
                tracing::warn!(max = MAX_TOOLS, "the child lists too many tools: the rest get no Mcp-Param-* check");
                break;
            }
            table.insert(name, params);
        }
    }

    /// Marks the table of child `generation` complete: every page of its list was learnt.
    pub fn learnt_every_page(&self, generation: u64) {
        let mut known = self.known();
        match &mut *known {
            Some(k) if k.generation == generation => k.complete = true,
            slot => *slot = Some(Known { generation, tools: HashMap::new(), complete: true }),
        }
    }

    /// The mirrored arguments of `tool` on child `generation`: `None` when that child's
    /// list must be read first (nothing known of it, or the tool is not in the pages seen
    /// so far); an empty list for a tool with none (or not listed at all).
    pub fn of(&self, generation: u64, tool: &str) -> Option<Vec<ParamHeader>> {
        let known = self.known();
        match &*known {
            Some(k) if k.generation == generation => match k.tools.get(tool) {
                Some(params) => Some(params.clone()),
                None if k.complete => Some(Vec::new()),
                None => None,
            },
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
        assert_eq!(headers.of(1, "b"), None, "b may be on a page not seen yet");
        headers.learnt_every_page(1);
        assert_eq!(headers.of(1, "b"), Some(vec![]), "an unlisted tool has nothing to check");
        assert_eq!(headers.of(2, "a"), None, "a new child is asked again");
        headers.learn(2, r#"{"tools":[{"name":"b"}]}"#);
        assert_eq!(headers.of(2, "b"), Some(vec![]));
        assert_eq!(headers.of(2, "a"), None, "a passing page does not make the table complete");
        headers.learnt_every_page(2);
        assert_eq!(headers.of(2, "a"), Some(vec![]));
    }
}
