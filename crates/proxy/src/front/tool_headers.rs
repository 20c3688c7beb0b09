//! The `x-mcp-header` annotations of the shared child's tools (SEP-2243), per child
//! generation: which arguments of which tool a 2026-07-28 client mirrors in `Mcp-Param-*`
//! headers. Bounded by [`MAX_TOOLS`]. Filled and read by `param_headers`. A table learnt
//! only from `tools/list` pages that passed through may lack tools of later pages; it is
//! complete once the proxy has listed every page itself. [`listable`] is the list a bridged
//! legacy client gets: no tool whose annotations are invalid.

use std::collections::HashMap;
use std::sync::Mutex;

use apiary_protocol::modern::{self, ParamHeader};
use bytes::Bytes;

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

/// A 2026-07-28 server's `tools/list` answer (a response frame) without the tools whose
/// `x-mcp-header` annotations are invalid, each dropped with a log line: a client lists none
/// of them (mcp-brief.md rule 31), and the proxy is the client when it bridges a legacy one.
/// Every other byte is kept.
pub fn listable(frame: Bytes) -> Bytes {
    match modern::drop_invalid_tools(&frame) {
        Some((kept, dropped)) => {
            for (tool, why) in dropped {
                tracing::warn!(%tool, %why, "a tool with an invalid x-mcp-header annotation is not listed");
            }
            kept
        }
        None => frame,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_describes_one_child_generation() {
        let headers = ToolHeaders::default();
        assert_eq!(headers.of(1, "a"), None);
        headers.learn(
            1,
            r#"{"tools":[{"name":"a","inputSchema":{"properties":{"r":{"type":"string","x-mcp-header":"R"}}}}]}"#,
        );
        assert_eq!(headers.of(1, "a"), Some(vec![ParamHeader::top("r", "R")]));
        assert_eq!(headers.of(1, "b"), None, "b may be on a page not seen yet");
        headers.learnt_every_page(1);
        assert_eq!(headers.of(1, "b"), Some(vec![]), "an unlisted tool has nothing to check");
        assert_eq!(headers.of(2, "a"), None, "a new child is asked again");
        headers.learn(2, r#"{"tools":[{"name":"b"}]}"#);
        assert_eq!(headers.of(2, "b"), Some(vec![]));
        assert_eq!(headers.of(2, "a"), None, "a passing page does not make the table complete");
        headers.learnt_every_page(2);
        assert_eq!(headers.of(2, "a"), Some(vec![]));
        // A tool whose annotations are invalid has nothing to check (a client drops it).
        headers.learn(
            3,
            r#"{"tools":[{"name":"n","inputSchema":{"properties":{"r":{"type":"number","x-mcp-header":"R"}}}}]}"#,
        );
        assert_eq!(headers.of(3, "n"), Some(vec![]));
    }

    #[test]
    fn a_bridged_list_keeps_only_the_tools_a_client_may_list() {
        let frame = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"bad","inputSchema":{"properties":{"l":{"items":{"type":"string","x-mcp-header":"L"}}}}},{"name":"good","inputSchema":{"properties":{"t":{"type":"object","properties":{"z":{"type":"string","x-mcp-header":"Z"}}}}}}]}}"#,
        );
        let out = listable(frame);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        let names: Vec<&str> =
            v["result"]["tools"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(names, ["good"]);
        let fine = Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#);
        assert_eq!(listable(fine.clone()), fine);
    }
}
