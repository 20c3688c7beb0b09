#!/usr/bin/env bash
# Measures what authentication (cached JWKS), Cedar (20 policies) and audit add to a call:
# the same proxy, the same stdio fixture server, once bare and once with the policy on,
# each loaded by apiary-bench for the same time. Prints two Markdown rows (docs/benchmarks.md).
# With --layers it also runs authentication alone and audit alone (Cedar's share is the
# rest: without a token the anonymous caller is denied, so Cedar cannot be run alone here).
# Usage: crates/bench/policy-bench.sh [SECONDS] [--layers]   (builds the release binaries first)
# APIARY_BIN=/path/to/apiary runs that proxy binary instead of the one just built (e.g. a copy
# built from an older commit, to compare both under the same machine load).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
layers=${2:-}
target=${CARGO_TARGET_DIR:-${APIARY_CACHE:-$HOME/.cache/apiary}/target}/release
cargo build --release -q -p apiary -p apiary-bench -p apiary-testkit
apiary=${APIARY_BIN:-$target/apiary}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# A token issuer on 127.0.0.1 and one token (group engineering, which the policy lets call echo).
"$target/apiary-testkit-issuer" --audience apiary-bench --groups engineering >"$work/issuer.json" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/issuer.json" ] && break; sleep 0.1; done
issuer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["issuer"])' "$work/issuer.json")
token=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$work/issuer.json")
printf '{"component":"bench","logFile":"%s/audit.log"}\n' "$work" >"$work/audit.json"

start_proxy() { # name, extra args... → sets url and pid
  local name=$1; shift
  "$apiary" proxy "$name" "$@" -- "$target/apiary-testkit-server" --stdio >"$work/$name.out" 2>"$work/$name.err" &
  pid=$!; pids+=("$pid")
  for _ in $(seq 100); do url=$(grep -ho 'http://[^ ]*/mcp' "$work/$name.out" | head -1) && [ -n "$url" ] && break; sleep 0.1; done
}

load() { # label, apiary-bench args... → one row against the last proxy started
  local label=$1; shift
  "$target/apiary-bench" --url "$url" --pid "$pid" --pin-self 0 --pin-target 1 --warmup 2 --duration "$secs" \
    --label "$label" --request-header "Authorization: Bearer $token" "$@"
  kill "$pid"
}
oidc=(--oidc-issuer "$issuer" --oidc-audience apiary-bench --oidc-insecure-allow-http)

start_proxy bare
load "proxy, no policy" --header
start_proxy policy "${oidc[@]}" --authz-config crates/bench/policy/cedar-20.json --audit-config "$work/audit.json"
load "proxy, authn + Cedar (20) + audit"
echo "audit events written: $(wc -l <"$work/audit.log")" >&2
if [ "$layers" = --layers ]; then
  start_proxy authn "${oidc[@]}"
  load "proxy, authn only"
  start_proxy audit --audit-config "$work/audit.json"
  load "proxy, audit only"
fi
