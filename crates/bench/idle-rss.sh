#!/usr/bin/env bash
# The idle RSS of one proxy (the process alone, not its stdio child) and what it is made of:
# `apiary run --foreground --isolation none --stdio-mode shared` in front of the fixture server
# over stdio, one session (initialize, notifications/initialized, tools/list, DELETE) through
# `apiary-bench --hold 1`, then idle for IDLE_SECS seconds (default 3); then VmRSS, its file-backed and anonymous
# parts, the thread count, and the binary's own resident pages (code, read-only data) from
# /proc/<pid>/smaps. N runs, each against a fresh proxy; one Markdown row per run.
# Usage: crates/bench/idle-rss.sh [N] [LABEL]
#   Binaries from $CARGO_TARGET_DIR/release (build them first:
#   cargo build --release -p apiary -p apiary-testkit -p apiary-bench); APIARY_BIN overrides the
#   proxy (e.g. target/dist/apiary), SERVER_BIN and BENCH_BIN the other two. IDLE_SECS=12 waits
#   past the proxy's idle check (crates/cli/src/trim.rs, every 5 s), which gives memory back.
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-3}
target=${CARGO_TARGET_DIR:-${APIARY_CACHE:-$HOME/.cache/apiary}/target}/release
apiary=${APIARY_BIN:-$target/apiary}
server=${SERVER_BIN:-$target/apiary-testkit-server}
bench=${BENCH_BIN:-$target/apiary-bench}
label=${2:-$apiary}
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

kib() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$2/status"; }
mib() { awk -v v="$1" 'BEGIN { printf "%.1f", v / 1024 }'; }
# Resident KiB of the binary's own mappings with the given permissions.
exe_rss() {
  awk -v exe="$(readlink "/proc/$2/exe")" -v perms="$1" '
    /^[0-9a-f]+-[0-9a-f]+ / { mine = ($6 == exe && $2 == perms) }
    mine && $1 == "Rss:" { sum += $2 }
    END { print sum + 0 }' "/proc/$2/smaps"
}

echo "| run | VmRSS MiB | file-backed MiB | anonymous MiB | binary code (r-xp) MiB | binary read-only (r--p) MiB | threads |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for _ in $(seq "$runs"); do
  export APIARY_STATE_DIR=$work/state-$RANDOM
  "$apiary" run --foreground --isolation none --name idle-rss --stdio-mode shared -- "$server" --stdio \
    >"$work/out" 2>"$work/err" &
  pid=$!
  url=""
  for _ in $(seq 300); do
    url=$(grep -m1 -o 'http://[^ ]*/mcp' "$work/out" || true)
    [ -n "$url" ] && break
    sleep 0.1
  done
  if [ -z "$url" ]; then echo "the proxy printed no URL:" >&2; cat "$work/err" >&2; exit 1; fi
  "$bench" --url "$url" --pid "$pid" --hold 1 --hold-secs 1 >/dev/null
  sleep "${IDLE_SECS:-3}"
  echo "| $label | $(mib "$(kib VmRSS $pid)") | $(mib "$(kib RssFile $pid)") | $(mib "$(kib RssAnon $pid)") |" \
    "$(mib "$(exe_rss r-xp $pid)") | $(mib "$(exe_rss r--p $pid)") | $(kib Threads $pid) |"
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
done
