"""Many MCP client sessions at once, with the official Python SDK (PyPI `mcp`), that answer
the server's sampling and elicitation requests with values derived from what they were asked:
a request delivered to the wrong session would come back with the wrong answer.

Usage:
  py_mux.py auto URL N_SAMPLING N_ELICITATION
      Opens N_SAMPLING sessions declaring sampling and N_ELICITATION declaring elicitation,
      asks each its child's pid, prints {"ready": true}, waits for a line "go" on stdin, then
      calls test_sampling / test_elicitation in every session at once and prints one JSON
      object: {"sessions": [ {name, kind, asked, pid, text, is_error, error, seen}, ... ]}.
  py_mux.py shared URL
      Two sampling sessions A and B on one shared child: A's sampling request is held open
      (its callback waits) while B calls test_sampling, then A is answered, then B calls
      again alone. Prints {"a": ..., "b_while_a": ..., "b_alone": ..., "seen_a": [...],
      "seen_b": [...], "pids": [pid_a, pid_b]}.

Every wait is bounded; any failure is an exception (non-zero exit, traceback on stderr).
"""

import asyncio
import contextlib
import json
import sys

import mcp.types as types
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

# Bounds every wait in this script (a stuck proxy must not hang the test).
WAIT = 45.0


def answer_for(asked: str) -> str:
    """What a client answers when asked `asked`: unique to the question."""
    return f"answer-to:{asked}"


def prompt_of(params: types.CreateMessageRequestParams) -> str:
    content = params.messages[0].content
    blocks = content if isinstance(content, list) else [content]
    return "".join(getattr(b, "text", "") for b in blocks)


def text_of(result: types.CallToolResult) -> str:
    return "".join(getattr(b, "text", "") for b in result.content)


class Client:
    """One session and what its callbacks were asked."""

    def __init__(self, name: str, kind: str, asked: str):
        self.name = name
        self.kind = kind
        self.asked = asked
        self.seen: list[str] = []
        # Set when a sampling request arrives; the callback then waits for `release`.
        self.sampling_arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.session: ClientSession | None = None

    async def on_sampling(self, _ctx, params: types.CreateMessageRequestParams):
        prompt = prompt_of(params)
        self.seen.append(prompt)
        self.sampling_arrived.set()
        await asyncio.wait_for(self.release.wait(), WAIT)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=answer_for(prompt)),
            model="mux-test",
        )

    async def on_elicitation(self, _ctx, params):
        message = params.message
        self.seen.append(message)
        return types.ElicitResult(
            action="accept",
            content={"username": answer_for(message), "email": f"{self.name}@example.com"},
        )

    async def open(self, stack: contextlib.AsyncExitStack, url: str) -> None:
        read, write = await stack.enter_async_context(streamable_http_client(url))
        callbacks = (
            {"sampling_callback": self.on_sampling}
            if self.kind == "sampling"
            else {"elicitation_callback": self.on_elicitation}
        )
        self.session = await stack.enter_async_context(ClientSession(read, write, **callbacks))
        await asyncio.wait_for(self.session.initialize(), WAIT)

    async def pid(self) -> str:
        return text_of(await asyncio.wait_for(self.session.call_tool("pid", {}), WAIT))

    async def ask(self, asked: str) -> dict:
        """Calls the tool that makes the server ask this client; the outcome as a dict."""
        tool, args = (
            ("test_sampling", {"prompt": asked}) if self.kind == "sampling" else ("test_elicitation", {"message": asked})
        )
        try:
            result = await asyncio.wait_for(self.session.call_tool(tool, args), WAIT)
            return {"asked": asked, "text": text_of(result), "is_error": bool(result.is_error), "error": None}
        except MCPError as e:
            return {"asked": asked, "text": None, "is_error": None, "error": {"code": e.code, "message": e.message}}


async def read_line() -> str:
    return (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip()


async def run_auto(url: str, n_sampling: int, n_elicitation: int) -> None:
    clients = [Client(f"s{i}", "sampling", f"sample-prompt-of-s{i}") for i in range(n_sampling)]
    clients += [Client(f"e{i}", "elicitation", f"elicit-message-of-e{i}") for i in range(n_elicitation)]
    async with contextlib.AsyncExitStack() as stack:
        for c in clients:
            await c.open(stack, url)
        pids = await asyncio.gather(*(c.pid() for c in clients))
        print(json.dumps({"ready": True}), flush=True)
        go = await asyncio.wait_for(read_line(), WAIT)
        if go != "go":
            raise SystemExit(f"expected 'go' on stdin, got {go!r}")
        outcomes = await asyncio.gather(*(c.ask(c.asked) for c in clients))
        report = [
            {"name": c.name, "kind": c.kind, "pid": pid, "seen": c.seen, **o}
            for c, pid, o in zip(clients, pids, outcomes)
        ]
    print(json.dumps({"sessions": report}), flush=True)


async def run_shared(url: str) -> None:
    a = Client("a", "sampling", "prompt-of-a")
    b = Client("b", "sampling", "prompt-of-b")
    async with contextlib.AsyncExitStack() as stack:
        await a.open(stack, url)
        await b.open(stack, url)
        pids = [await a.pid(), await b.pid()]
        # A's sampling request arrives while only A has a call in flight; A holds it open.
        a.release.clear()
        a_call = asyncio.create_task(a.ask(a.asked))
        await asyncio.wait_for(a.sampling_arrived.wait(), WAIT)
        # Now B's call and A's call are both in flight: B's request has no certain owner.
        b_while_a = await b.ask("prompt-of-b-while-a")
        a.release.set()
        a_result = await asyncio.wait_for(a_call, WAIT)
        # B alone in flight: its request is B's for certain.
        b_alone = await b.ask("prompt-of-b-alone")
    print(
        json.dumps(
            {
                "a": a_result,
                "b_while_a": b_while_a,
                "b_alone": b_alone,
                "seen_a": a.seen,
                "seen_b": b.seen,
                "pids": pids,
            }
        ),
        flush=True,
    )


def main() -> None:
    args = sys.argv[1:]
    if len(args) == 4 and args[0] == "auto":
        asyncio.run(run_auto(args[1], int(args[2]), int(args[3])))
    elif len(args) == 2 and args[0] == "shared":
        asyncio.run(run_shared(args[1]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
