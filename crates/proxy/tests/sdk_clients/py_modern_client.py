"""Drives an MCP server with the official Python SDK (PyPI `mcp`) in its 2026-07-28 mode.

Usage: py_modern_client.py URL MODE SAMPLING_TOOL
MODE is `2026-07-28` (no handshake: every request stands alone) or `legacy` (initialize).
The client declares sampling and answers every sampling request with a fixed text. It lists
tools, calls `echo`, then SAMPLING_TOOL (which asks the client to sample: in 2026-07-28 as an
InputRequiredResult the SDK answers and retries, in legacy as a server→client request), and
prints one JSON object on stdout: {"protocolVersion": ..., "tools": [names], "echo": CallToolResult,
"sampled": CallToolResult, "samplings": n}. Any failure is an exception: a non-zero exit
status and the traceback on stderr.
"""

import asyncio
import json
import sys

import mcp_types as types
from mcp import Client

SAMPLED = "sampled by the python client"


async def main(url: str, mode: str, sampling_tool: str) -> None:
    samplings = 0

    async def sampling(context, params):
        nonlocal samplings
        samplings += 1
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=SAMPLED),
            model="test-model",
            stop_reason="endTurn",
        )

    async with Client(url, mode=mode, sampling_callback=sampling) as client:
        listed = await client.list_tools()
        echo = await client.call_tool("echo", {"message": "hello through the bridge"})
        sampled = await client.call_tool(sampling_tool, {"prompt": "Say hi", "maxTokens": 10})
        dump = lambda r: r.model_dump(mode="json", by_alias=True, exclude_none=True)
        out = {
            "protocolVersion": client.protocol_version,
            "tools": [t.name for t in listed.tools],
            "echo": dump(echo),
            "sampled": dump(sampled),
            "samplings": samplings,
        }
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: py_modern_client.py URL MODE SAMPLING_TOOL")
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
