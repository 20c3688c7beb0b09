#!/usr/bin/env bash
# How long `apiary run` takes until the server answers its first tools/list, per way of running
# it: the process sandbox (default profile `network`, and profile `none`, which adds a network
# namespace), a plain child (`--isolation none`) and a container (rootful Podman, profile `none`,
# an image built here from the fixture server; skipped with the reason when no engine answers).
# Each run: `apiary run` (detached start, returns once the proxy listens), then initialize and
# tools/list through the proxy, timed together; then `apiary rm`. N runs per column, median and
# p90. Then the RSS of one idle sandboxed workload: the proxy, the sandbox helper and the server.
# Prints Markdown rows for docs/benchmarks.md.
# Usage: crates/bench/start-bench.sh [N] [--release]
#   Debug binaries by default (what `cargo test` builds); --release builds and uses release ones.
#   The container column needs APIARY_PODMAN_SOCKET, CONTAINERS_CONF and CONTAINERS_STORAGE_CONF
#   (`eval "$(cargo xtask podman env)"` while the test Podman runs).
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-20}
profile=debug
if [ "${2:-}" = "--release" ]; then profile=release; fi
target=${CARGO_TARGET_DIR:-${APIARY_CACHE:-$HOME/.cache/apiary}/target}/$profile
if [ "$profile" = release ]; then
  cargo build --release -q -p apiary -p apiary-testkit
else
  cargo build -q -p apiary -p apiary-testkit
fi
apiary=${APIARY_BIN:-$target/apiary}
server=$target/apiary-testkit-server
work=$(mktemp -d)
export APIARY_STATE_DIR=$work/state
cleanup() { "$apiary" rm --all >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

# The fixture server as an image (no registry): its binary and the libraries ldd names.
image=""
engine_reason=""
if [ -z "${APIARY_PODMAN_SOCKET:-}" ]; then
  engine_reason="APIARY_PODMAN_SOCKET is not set (eval \"\$(cargo xtask podman env)\" while the test Podman runs)"
elif ! curl -sf --max-time 5 --unix-socket "${APIARY_PODMAN_SOCKET#unix://}" http://d/_ping >/dev/null; then
  engine_reason="no engine answers on $APIARY_PODMAN_SOCKET"
else
  image=localhost/apiary-testkit-server:bench
  root=$work/rootfs
  mkdir -p "$root/tmp"
  cp "$server" "$root/apiary-testkit-server"
  for lib in $(ldd "$server" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"; cp "$lib" "$root$lib"
  done
  tar --numeric-owner --owner=0 --group=0 -C "$root" -cf "$work/rootfs.tar" .
  podman import --quiet --change 'ENTRYPOINT ["/apiary-testkit-server"]' "$work/rootfs.tar" "$image" >/dev/null
fi

python3 - "$apiary" "$server" "$runs" "$image" "$engine_reason" "$profile" <<'PY'
import json, os, statistics, subprocess, sys, time, urllib.request

apiary, server, runs, image, engine_reason, profile = sys.argv[1:7]
runs = int(runs)
ACCEPT = "application/json, text/event-stream"

def post(url, body, sid=None):
    headers = {"Content-Type": "application/json", "Accept": ACCEPT}
    if sid:
        headers["Mcp-Session-Id"] = sid
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(req, timeout=60) as r:
        text = r.read().decode()
        sid = r.headers.get("Mcp-Session-Id", sid)
    if text.startswith("event:") or text.startswith("data:") or "\ndata:" in text:
        text = next(l[5:] for l in text.splitlines() if l.startswith("data:"))
    return (json.loads(text) if text.strip() else None), sid

def first_tools_list(url):
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "start-bench", "version": "1"}}}
    _, sid = post(url, init)
    post(url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
    answer, _ = post(url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, sid)
    tools = answer["result"]["tools"]
    assert any(t["name"] == "echo" for t in tools), answer

def run(args, env=None):
    return subprocess.run([apiary, *args], capture_output=True, text=True, env=env, check=True).stdout.strip()

counter = iter(range(1_000_000))

def column(label, run_args, env=None):
    times = []
    for _ in range(runs):
        name = f"bench-{next(counter)}"
        t0 = time.perf_counter()
        url = run(["run", "--name", name, *run_args(name)], env)
        first_tools_list(url)
        times.append((time.perf_counter() - t0) * 1000)
        run(["rm", name], env)
    times.sort()
    p90 = times[min(len(times) - 1, int(round(0.9 * len(times))) - 1)]
    print(f"| {label} | {runs} | {statistics.median(times):.0f} | {p90:.0f} | {times[0]:.0f} | {times[-1]:.0f} |")
    return statistics.median(times)

print(f"| start → first tools/list ({profile} build) | runs | median ms | p90 ms | min ms | max ms |")
print("|---|---:|---:|---:|---:|---:|")
plain = column("plain child (`--isolation none`)", lambda n: ["--isolation", "none", "--", server, "--stdio"])
sandbox = column("sandbox, profile `network` (default)", lambda n: ["--", server, "--stdio"])
sandbox_none = column("sandbox, profile `none`", lambda n: ["--permission-profile", "none", "--", server, "--stdio"])
if image:
    env = dict(os.environ, DOCKER_HOST=os.environ["APIARY_PODMAN_SOCKET"])
    column("container (Podman, profile `none`)", lambda n: ["--permission-profile", "none", image, "--", "--stdio"], env)
else:
    print(f"| container | skipped: {engine_reason} | | | | |")
print()
print(f"Sandbox adds {sandbox - plain:.0f} ms (profile `network`) and {sandbox_none - plain:.0f} ms (profile `none`) "
      "to the median of a plain child.")

# The sandbox alone, without the proxy and `apiary run`'s readiness polling (100 ms steps, which
# the numbers above cannot see through): `/usr/bin/true` started directly and through the helper
# (profile `none`: user, mount, pid, ipc, uts and network namespaces, the new root, Landlock,
# seccomp), 5 × N times each.
spec = {
    "read_only": [{"host": d, "inside": d, "optional": True}
                  for d in ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"]],
    "read_write": [], "host_network": False, "allow_degraded": False,
    "max_open_files": 8192, "max_processes": 4096, "max_address_space": None,
    "max_memory": 8 << 30, "cwd": None,
}
def timed(cmd):
    times = []
    for _ in range(5 * runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(0.9 * len(times)) - 1]
direct = timed(["/usr/bin/true"])
helper = timed([apiary, "__sandbox-exec", "--spec", json.dumps(spec), "--", "/usr/bin/true"])
print()
print(f"| process start ({profile} build) | runs | median ms | p90 ms |")
print("|---|---:|---:|---:|")
print(f"| `/usr/bin/true` | {5 * runs} | {direct[0]:.1f} | {direct[1]:.1f} |")
print(f"| `apiary __sandbox-exec` (profile `none`) `-- /usr/bin/true` | {5 * runs} | {helper[0]:.1f} | {helper[1]:.1f} |")
print()
print(f"The sandbox adds {helper[0] - direct[0]:.1f} ms (median) to a process start.")

# Memory of one idle sandboxed workload: every process under the proxy, by role.
url = run(["run", "--name", "idle", "--permission-profile", "none", "--", server, "--stdio"])
first_tools_list(url)
time.sleep(2)
status = json.loads(run(["status", "idle", "--format", "json"]))
proxy = status["proxy"]["pid"]

def children(pid):
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            out += [int(c) for c in open(f"/proc/{pid}/task/{task}/children").read().split()]
        except OSError:
            pass
    return out

def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0

def role(pid, parent_role):
    cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    words = [w.decode(errors="replace") for w in cmd if w]
    if "__serve" in words:
        return "proxy (`apiary __serve`)"
    if "__sandbox-exec" in words and parent_role.startswith("sandbox helper"):
        return "sandbox helper: pid 1 inside (reaper)"
    if "__sandbox-exec" in words:
        return "sandbox helper: outside (`apiary __sandbox-exec`, waits for pid 1)"
    return "server (the fixture, " + os.path.basename(words[0]) + ")"

rows, todo = [], [(proxy, "")]
while todo:
    pid, parent_role = todo.pop(0)
    r = role(pid, parent_role)
    rows.append((r, pid, rss_kib(pid)))
    todo += [(c, r) for c in children(pid)]
print()
print("| idle sandboxed workload (profile `none`) | pid | RSS KiB |")
print("|---|---:|---:|")
for r, pid, kib in rows:
    print(f"| {r} | {pid} | {kib} |")
total = sum(k for _, _, k in rows)
apiary_only = sum(k for r, _, k in rows if not r.startswith("server"))
print(f"| total (proxy + helper: {apiary_only}) | | {total} |")
run(["rm", "idle"])
PY
