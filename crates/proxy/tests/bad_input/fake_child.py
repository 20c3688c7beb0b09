"""A deliberately misbehaving stdio MCP server for Apiary's bad-input tests (bad-input.md rows
16 and 25-28). It speaks just enough JSON-RPC (initialize, ping, tools/call) to be proxied, and
its tools misbehave on purpose: junk stdout lines, answers in a batch line, oversized lines,
a flood of progress notifications, a closed stdout, a stalled stdin.

Usage: fake_child.py [--stall-client NAME]
  --stall-client NAME  stop reading stdin for good once a client named NAME (initialize
                       params.clientInfo.name) has sent notifications/initialized.
Only the Python standard library is used.
"""

import json
import os
import sys
import time

OUT = sys.stdout.buffer


def write_raw(line):
    OUT.write(line + b"\n")
    OUT.flush()


def send(obj):
    write_raw(json.dumps(obj).encode())


def text_result(req_id, text):
    send({"jsonrpc": "2.0", "id": req_id, "result": {"content": [{"type": "text", "text": text}]}})


# Lines no MCP client may ever see (row 25).
JUNK = [
    b"Server listening on stdio",
    b"\xff\xfe not UTF-8 \xc0\xaf",
    b"[" * 200 + b"]" * 200,
    b'{"a":' * 150 + b"1" + b"}" * 150,
    b'{"hello":"world"}',
    b'{"jsonrpc":"1.0","id":1,"method":"x"}',
    b'{"jsonrpc":"2.0","method":42}',
    b'{"jsonrpc":"2.0","id":987654321,"result":{"junk":"never issued"}}',
    b'{"jsonrpc":"2.0","id":"never-issued","error":{"code":1,"message":"junk"}}',
    b"",
    b"   ",
    b"42",
]


class Server:
    def __init__(self, stall_client):
        self.stall_client = stall_client
        self.client_name = None
        self.held = []
        # ask id -> the tools/call id waiting for the client's answer
        self.asking = {}

    def on_request(self, msg):
        req_id = msg["id"]
        method = msg.get("method")
        params = msg.get("params") or {}
        if method == "initialize":
            self.client_name = (params.get("clientInfo") or {}).get("name")
            version = params.get("protocolVersion", "2025-11-25")
            send({"jsonrpc": "2.0", "id": req_id, "result": {
                "protocolVersion": version,
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "fake-child", "version": "1"},
            }})
        elif method == "ping":
            send({"jsonrpc": "2.0", "id": req_id, "result": {}})
        elif method == "tools/list":
            send({"jsonrpc": "2.0", "id": req_id, "result": {"tools": []}})
        elif method == "tools/call":
            self.on_tool(req_id, params)
        else:
            send({"jsonrpc": "2.0", "id": req_id, "error": {"code": -32601, "message": "Method not found"}})

    def on_tool(self, req_id, params):
        name = params.get("name")
        args = params.get("arguments") or {}
        if name == "echo":
            text_result(req_id, args.get("text", ""))
        elif name == "pid":
            text_result(req_id, str(os.getpid()))
        elif name == "noisy":
            for line in JUNK:
                write_raw(line)
            text_result(req_id, "noisy done")
        elif name == "hold":
            self.held.append(req_id)
        elif name == "release":
            for held in self.held:
                text_result(held, "held")
            self.held = []
            text_result(req_id, "released")
        elif name == "batchy":
            answer = {"jsonrpc": "2.0", "id": req_id,
                      "result": {"content": [{"type": "text", "text": "from a batch"}]}}
            write_raw(json.dumps([answer, {"not": "json-rpc"}]).encode())
        elif name == "big":
            # The id comes first, so a streaming scan of the line's head finds it (row 26).
            size = int(args.get("size", 1 << 20))
            head = b'{"jsonrpc":"2.0","id":' + json.dumps(req_id).encode()
            write_raw(head + b',"result":{"content":[{"type":"text","text":"' + b"x" * size + b'"}]}}')
        elif name == "big_note":
            size = int(args.get("size", 1 << 20))
            write_raw(b'{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"'
                      + b"x" * size + b'"}}')
            text_result(req_id, "after")
        elif name == "flood":
            self.flood(req_id, params, args)
        elif name == "ask":
            # A server->client request, whatever the client declared; the tool answers
            # with the client's whole response.
            ask_id = "ask-%s" % (req_id,)
            self.asking[ask_id] = req_id
            send({"jsonrpc": "2.0", "id": ask_id, "method": "sampling/createMessage",
                  "params": {"messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}],
                             "maxTokens": 10}})
        elif name == "close_stdout":
            OUT.flush()
            os.close(1)
        elif name == "exit":
            sys.exit(1)
        else:
            send({"jsonrpc": "2.0", "id": req_id, "error": {"code": -32602, "message": "unknown tool"}})

    def flood(self, req_id, params, args):
        """Progress notifications until `stop` names an existing file or `count` were sent."""
        token = (params.get("_meta") or {}).get("progressToken")
        stop = args.get("stop")
        count = int(args.get("count", 1 << 30))
        pace = float(args.get("pace_ms", 0)) / 1000.0
        pad = "p" * int(args.get("pad", 1024))
        sent = 0
        while sent < count and not (stop and os.path.exists(stop)):
            note = {"jsonrpc": "2.0", "method": "notifications/progress",
                    "params": {"progressToken": token, "progress": sent, "message": pad}}
            if token is None:
                note = {"jsonrpc": "2.0", "method": "notifications/message",
                        "params": {"level": "info", "data": pad}}
            send(note)
            sent += 1
            if pace:
                time.sleep(pace)
        text_result(req_id, "flooded %d" % sent)

    def run(self):
        stdin = sys.stdin.buffer
        while True:
            line = stdin.readline()
            if not line:
                return
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if not isinstance(msg, dict):
                continue
            if "method" in msg and "id" in msg:
                self.on_request(msg)
            elif "id" in msg and msg.get("id") in self.asking:
                text_result(self.asking.pop(msg["id"]), json.dumps(msg))
            elif msg.get("method") == "notifications/initialized":
                if self.stall_client is not None and self.client_name == self.stall_client:
                    while True:
                        time.sleep(3600)


def main():
    args = sys.argv[1:]
    stall = None
    if len(args) == 2 and args[0] == "--stall-client":
        stall = args[1]
    Server(stall).run()


if __name__ == "__main__":
    main()
