#!/usr/bin/env bash
# What the virtual MCP server costs: the HTTP fixture server loaded directly, through the bare
# proxy (`apiary proxy --target-uri`, its transparent reverse proxy) and through
# `apiary vmcp serve` with that server as its one backend (priority strategy, so `echo` keeps its
# name), each by apiary-bench for the same time; then the vMCP's RSS before and after sessions
# are opened, used once and closed for the same time again (`--calls-per-session 1`).
# Prints Markdown rows for docs/benchmarks.md.
# Usage: crates/bench/vmcp-bench.sh [SECONDS]   (builds the release binaries first)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
target=${CARGO_TARGET_DIR:-${APIARY_CACHE:-$HOME/.cache/apiary}/target}/release
cargo build --release -q -p apiary -p apiary-bench -p apiary-testkit
apiary=${APIARY_BIN:-$target/apiary}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

started() { # file → the first http://…/mcp URL printed to it (bounded wait)
  for _ in $(seq 100); do
    url=$(grep -ho 'http://[^ ]*/mcp' "$1" 2>/dev/null | head -1) && [ -n "$url" ] && return 0
    sleep 0.1
  done
  echo "no URL in $1" >&2; cat "$1" >&2; return 1
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
load() { # label url pid apiary-bench args...
  local label=$1 url=$2 pid=$3; shift 3
  "$target/apiary-bench" --url "$url" --pid "$pid" --pin-self 0 --pin-target 1 --warmup 2 --duration "$secs" \
    --label "$label" "$@"
}

"$target/apiary-testkit-server" --http 127.0.0.1:0 >"$work/server.out" 2>"$work/server.err" &
server_pid=$!; pids+=("$server_pid")
started "$work/server.out"; server_url=$url
load "direct (fixture over HTTP)" "$server_url" "$server_pid" --header

"$apiary" proxy bench-bare --target-uri "$server_url" >"$work/proxy.out" 2>"$work/proxy.err" &
proxy_pid=$!; pids+=("$proxy_pid")
started "$work/proxy.out"
load "proxy (reverse proxy to it)" "$url" "$proxy_pid"
kill "$proxy_pid"

cat >"$work/vmcp.yaml" <<YAML
name: bench
backends:
  - name: fixture
    url: $server_url
    transport: streamable-http
aggregation:
  conflictResolution: priority
  conflictResolutionConfig:
    priorityOrder: [fixture]
YAML
"$apiary" vmcp serve --config "$work/vmcp.yaml" --port 0 >"$work/vmcp.out" 2>"$work/vmcp.err" &
vmcp_pid=$!; pids+=("$vmcp_pid")
started "$work/vmcp.out"; vmcp_url=$url
load "vmcp (1 backend)" "$vmcp_url" "$vmcp_pid"

# Memory: RSS once the measured load above is over, then after each of three rounds of sessions
# opened, used once and closed (growth that stops after the first round is the allocator keeping
# pages, not a leak).
sleep 1
echo
echo "| vMCP RSS | sessions opened and closed | errors | KiB |"
echo "|---|---:|---:|---:|"
echo "| after the measured load | 0 | 0 | $(rss_kib "$vmcp_pid") |"
total=0
for round in 1 2 3; do
  "$target/apiary-bench" --url "$vmcp_url" --sessions 8 --warmup 0 --duration "$secs" --calls-per-session 1 \
    --label "vmcp churn" --json "$work/churn.json" >/dev/null
  sleep 2
  read -r closed errors < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["sessions_closed"], r["errors"])' "$work/churn.json")
  total=$((total + closed))
  echo "| after churn round $round | $total | $errors | $(rss_kib "$vmcp_pid") |"
done
