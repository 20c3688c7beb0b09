"""Many official Python SDK clients (PyPI `mcp`) at once against one proxied server: modern
callers beside sampling round trips of both eras. Every value a client sends or answers is
unique to it, so a message delivered to the wrong client comes back with the wrong value.

Usage: py_modern_load.py URL N_CALLERS N_CALLS N_SAMPLERS SAMPLING_TOOL
  N_CALLERS clients in 2026-07-28 mode (no capabilities declared) each call `echo` one call at
  a time with the message `caller-<i>-call-<j>`: at least N_CALLS calls each, and on until every
  sampler has finished (at most MAX_CALLS). Once every caller has had a first answer, N_SAMPLERS
  clients in 2026-07-28 mode (`modern-<k>`, the InputRequiredResult round trip) and N_SAMPLERS in
  legacy mode (`legacy-<k>`, a session and a server→client request) each call SAMPLING_TOOL
  with the prompt `prompt-of-<name>`; their sampling callback answers `sampled-for-<name>`.
Prints one JSON object:
  {"callers": [{"name", "calls": [[message, text or null, error or null], ...]}],
   "samplers": [{"name", "mode", "seen": [prompts], "text", "is_error", "error",
                 "echo_before", "echo_after"}]}
where echo_before/after count the echo answers all callers had when the sampler started and
ended. Every wait is bounded; a failure outside one call is an exception (non-zero exit).
"""

import asyncio
import json
import sys

import mcp_types as types
from mcp import Client

# Bounds every wait in this script (a stuck proxy must not hang the test).
WAIT = 60.0
# Most echo calls one caller makes, however long the samplers take.
MAX_CALLS = 2000


def text_of(result) -> str:
    return "".join(getattr(b, "text", "") for b in result.content)


def prompt_of(params) -> str:
    content = params.messages[0].content
    blocks = content if isinstance(content, list) else [content]
    return "".join(getattr(b, "text", "") for b in blocks)


class Load:
    def __init__(self, n_callers: int) -> None:
        self.echo_answers = 0
        self.first_answers = 0
        self.n_callers = n_callers
        self.callers_started = asyncio.Event()
        self.samplers_done = asyncio.Event()


async def caller(load: Load, url: str, i: int, n_calls: int) -> dict:
    calls = []
    async with Client(url, mode="2026-07-28") as client:
        j = 0
        while j < MAX_CALLS and (j < n_calls or not load.samplers_done.is_set()):
            message = f"caller-{i}-call-{j}"
            try:
                result = await asyncio.wait_for(client.call_tool("echo", {"message": message}), WAIT)
                calls.append([message, text_of(result) if not result.is_error else None, None])
            except Exception as e:  # recorded: the test reports every lost call
                calls.append([message, None, f"{type(e).__name__}: {e}"])
            load.echo_answers += 1
            if j == 0:
                load.first_answers += 1
                if load.first_answers == load.n_callers:
                    load.callers_started.set()
            j += 1
    return {"name": f"caller-{i}", "calls": calls}


async def sampler(load: Load, url: str, name: str, mode: str, tool: str) -> dict:
    seen: list[str] = []

    async def sampling(_context, params):
        seen.append(prompt_of(params))
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text=f"sampled-for-{name}"),
            model="load-test",
            stop_reason="endTurn",
        )

    await asyncio.wait_for(load.callers_started.wait(), WAIT)
    before = load.echo_answers
    out = {"name": name, "mode": mode, "seen": seen, "text": None, "is_error": None, "error": None}
    try:
        async with Client(url, mode=mode, sampling_callback=sampling) as client:
            args = {"prompt": f"prompt-of-{name}", "maxTokens": 10}
            result = await asyncio.wait_for(client.call_tool(tool, args), WAIT)
            out["text"] = text_of(result)
            out["is_error"] = bool(result.is_error)
    except Exception as e:  # recorded: the test reports it
        out["error"] = f"{type(e).__name__}: {e}"
    out["echo_before"] = before
    out["echo_after"] = load.echo_answers
    return out


async def main(url: str, n_callers: int, n_calls: int, n_samplers: int, tool: str) -> None:
    load = Load(n_callers)
    callers = [asyncio.create_task(caller(load, url, i, n_calls)) for i in range(n_callers)]
    samplers = [
        asyncio.create_task(sampler(load, url, f"{era}-{k}", mode, tool))
        for era, mode in (("modern", "2026-07-28"), ("legacy", "legacy"))
        for k in range(n_samplers)
    ]
    try:
        sampled = await asyncio.gather(*samplers)
    finally:
        load.samplers_done.set()
    called = await asyncio.gather(*callers)
    print(json.dumps({"callers": called, "samplers": sampled}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    a = sys.argv
    asyncio.run(main(a[1], int(a[2]), int(a[3]), int(a[4]), a[5]))
