"""A legacy MCP server over stdio whose tools/list comes in two pages: `plain` on the first,
`regional` (its `region` argument mirrored in `Mcp-Param-Region`, SEP-2243) on the second.
Raw JSON-RPC, no SDK: the test is about what the proxy learns past the first page. Every
`tools/call` answers with the arguments it got. Exits when stdin closes."""

import json
import sys

PAGES = {
    None: {"tools": [{"name": "plain", "inputSchema": {"type": "object"}}], "nextCursor": "page-2"},
    "page-2": {
        "tools": [
            {
                "name": "regional",
                "inputSchema": {
                    "type": "object",
                    "properties": {"region": {"type": "string", "x-mcp-header": "Region"}},
                },
            }
        ]
    },
}


def answer(request: dict):
    method, params = request.get("method"), request.get("params") or {}
    if method == "initialize":
        return {
            "protocolVersion": params.get("protocolVersion", "2025-11-25"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "paged", "version": "1"},
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        page = PAGES.get(params.get("cursor"))
        return page if page is not None else {"error": "unknown cursor"}
    if method == "tools/call":
        text = json.dumps(params.get("arguments"), sort_keys=True)
        return {"content": [{"type": "text", "text": f"{params.get('name')} got {text}"}]}
    return None


for line in sys.stdin:
    try:
        request = json.loads(line)
    except ValueError:
        continue
    if "id" not in request or "method" not in request:
        continue
    result = answer(request)
    if result is None or "error" in result:
        out = {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "not found"}}
    else:
        out = {"jsonrpc": "2.0", "id": request["id"], "result": result}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
