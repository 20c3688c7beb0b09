#!/usr/bin/env bash
# Instructions per proxied `tools/call` of the bare proxy (no policy) with the fixture server as its
# stdio child, counted by callgrind: a figure machine load does not change, so a change that adds
# cost to the hot path shows (docs/benchmarks.md, "Instructions per proxied call"). The proxy runs
# under valgrind with one session of `apiary-bench` calling `echo` for SECONDS after a 4 s warm-up
# (counters zeroed after it). Prints the instructions per call of the whole proxy process, then the
# TOP functions of Apiary's own crates by inclusive count per call (a function that awaits counts
# once per poll, so async ones show what their polls cost, not what they wait for).
# Calls are counted by callgrind too: the `/mcp` handler's futures dropped, one per HTTP request
# (every request after the warm-up is a `tools/call`).
# Usage: crates/bench/callgrind.sh [SECONDS] [TOP]   (defaults 10, 25)
# APIARY_BIN=/path/to/apiary measures that binary; KEEP=1 keeps the callgrind file; ARGS="--stdio-mode shared"
# passes proxy flags; PAYLOAD=1024 sets the echoed bytes (default 64). Needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
top=${2:-25}
target=${CARGO_TARGET_DIR:-${APIARY_CACHE:-$HOME/.cache/apiary}/target}/release
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p apiary -p apiary-bench -p apiary-testkit
apiary=${APIARY_BIN:-$target/apiary}
work=$(mktemp -d)
pid=
cleanup() { [ -z "$pid" ] || kill "$pid" 2>/dev/null || true; [ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"; }
trap cleanup EXIT

# shellcheck disable=SC2086 # ARGS is a list of flags
valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
  "$apiary" proxy cg-bare ${ARGS:-} -- "$target/apiary-testkit-server" --stdio >"$work/p.out" 2>"$work/p.err" &
pid=$!
url=
for _ in $(seq 600); do url=$(grep -ho 'http://[^ ]*/mcp' "$work/p.out" | head -1) && [ -n "$url" ] && break; sleep 0.1; done
[ -n "$url" ] || { echo "the proxy printed no URL" >&2; cat "$work/p.err" >&2; exit 1; }
"$target/apiary-bench" --url "$url" --sessions 1 --payload-bytes "${PAYLOAD:-64}" --warmup 4 --duration "$secs" \
  >/dev/null &
bench=$!
sleep 4; callgrind_control -z "$pid" >/dev/null 2>&1
wait "$bench"
callgrind_control -d "$pid" >/dev/null 2>&1
kill "$pid"; wait "$pid" 2>/dev/null || true
pid=
python3 - "$work/cg.out.1" "$top" <<'PY'
import re, subprocess, sys
path, top = sys.argv[1], int(sys.argv[2])
ann = lambda *a: subprocess.run(["callgrind_annotate", "--auto=no", "--threshold=100", *a, path],
                                capture_output=True, text=True).stdout
num = lambda s: int(s.replace(",", ""))
total = num(re.search(r"([\d,]+) \S+\s+PROGRAM TOTALS", ann()).group(1))
# Calls: the handler futures of `/mcp` dropped (one per HTTP request, whatever its body does),
# summed over every caller line (`<`) above the function's own line (`*`) in the caller tree.
calls, callers = 0, []
for line in ann("--tree=caller", "--inclusive=yes").splitlines():
    if re.search(r"\*\s+\S*drop_in_place<apiary_proxy::front::streamable::mcp::\{\{closure\}\}>", line):
        calls = sum(callers)
        break
    c = re.search(r"<.*\(([\d,]+)x\)", line) if "  < " in line else None
    callers = callers + [num(c.group(1))] if c else []
if not calls:
    sys.exit("could not count the calls: no drop of the /mcp handler's future in the profile")
print(f"{calls} calls, {total // calls} instructions per call (whole proxy process)")
print(f"top {top} functions of apiary_proxy/protocol/transport, inclusive instructions per call:")
seen = 0
for line in ann("--inclusive=yes").splitlines():
    m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(\S+?):(\S.*?)(?: \[[^\]]*\])?$", line)
    # Lines of the crates' own files (a line naming a library's file is code inlined from it);
    # a library's generic inlined into a crate's file is named with that file.
    own = m and re.search(r"/crates/(proxy|protocol|transport)/src/(.*)$", m.group(2))
    if own:
        name = m.group(3) if m.group(3).startswith("apiary_") else f"{m.group(3)[:90]} (in {own.group(2)})"
        print(f"{num(m.group(1)) // calls:>9}  {name}")
        seen += 1
        if seen == top:
            break
PY
