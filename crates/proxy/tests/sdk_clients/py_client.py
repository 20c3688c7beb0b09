"""Drives an MCP server over Streamable HTTP with the official Python SDK (PyPI `mcp`).

Usage: py_client.py URL TOOL ARGS_JSON
A URL whose path ends in /sse is spoken to with the 2024-11-05 HTTP+SSE client instead.
Initializes, lists tools, calls TOOL with ARGS_JSON, and prints one JSON object on stdout:
{"server": ..., "protocolVersion": ..., "tools": [names], "result": CallToolResult}.
Any failure is an exception, so the exit status is non-zero and the traceback is on stderr.
With MCP_BEARER_TOKEN set, every HTTP request carries `Authorization: Bearer <token>`.
"""

import asyncio
import json
import os
import sys

from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def connect(url: str):
    token = os.environ.get("MCP_BEARER_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    if url.split("?")[0].rstrip("/").endswith("/sse"):
        return sse_client(url, headers=headers)
    if headers:
        return streamable_http_client(url, http_client=create_mcp_http_client(headers=headers))
    return streamable_http_client(url)


async def main(url: str, tool: str, args: dict) -> None:
    async with connect(url) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            listed = await session.list_tools()
            result = await session.call_tool(tool, args)
            out = {
                "server": init.server_info.name,
                "protocolVersion": init.protocol_version,
                "tools": [t.name for t in listed.tools],
                "result": result.model_dump(mode="json", by_alias=True, exclude_none=True),
            }
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: py_client.py URL TOOL ARGS_JSON")
    asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))
