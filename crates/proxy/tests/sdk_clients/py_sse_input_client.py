"""Drives an MCP server over the 2024-11-05 HTTP+SSE transport with the official Python SDK
(PyPI `mcp`, `mcp.client.sse.sse_client`), answering the server's requests for input.

Usage: py_sse_input_client.py SSE_URL SAMPLING_TOOL ELICITATION_TOOL
The client declares sampling and elicitation: every sampling request is answered with a
fixed text, every elicitation accepted with {"name": "Ada"}. It initializes, lists tools,
calls `echo`, then SAMPLING_TOOL and ELICITATION_TOOL (each asks the client for input while
it runs), and prints one JSON object on stdout: {"protocolVersion": ..., "tools": [names],
"echo": CallToolResult, "sampled": CallToolResult, "elicited": CallToolResult,
"samplings": n, "elicitations": n}. Any failure is an exception: a non-zero exit status and
the traceback on stderr.
"""

import asyncio
import json
import sys

import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client

SAMPLED = "sampled over 2024-11-05 sse"


async def main(url: str, sampling_tool: str, elicitation_tool: str) -> None:
    counts = {"samplings": 0, "elicitations": 0}

    async def sampling(context, params):
        counts["samplings"] += 1
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=SAMPLED),
            model="test-model",
            stop_reason="endTurn",
        )

    async def elicitation(context, params):
        counts["elicitations"] += 1
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    async with sse_client(url) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write, sampling_callback=sampling, elicitation_callback=elicitation) as session:
            init = await session.initialize()
            listed = await session.list_tools()
            echo = await session.call_tool("echo", {"text": "over 2024-11-05 sse"})
            sampled = await session.call_tool(sampling_tool, {})
            elicited = await session.call_tool(elicitation_tool, {})
            dump = lambda r: r.model_dump(mode="json", by_alias=True, exclude_none=True)
            out = {
                "protocolVersion": init.protocol_version,
                "tools": [t.name for t in listed.tools],
                "echo": dump(echo),
                "sampled": dump(sampled),
                "elicited": dump(elicited),
                **counts,
            }
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: py_sse_input_client.py SSE_URL SAMPLING_TOOL ELICITATION_TOOL")
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
