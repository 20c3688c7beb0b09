#!/usr/bin/env bash
# Measures what authentication (cached JWKS), Cedar (20 policies) and audit add to a call:
# the same proxy, the same stdio fixture server, once bare and once with the policy on,
# each loaded by apiary-bench for the same time. Prints two Markdown rows (docs/benchmarks.md).
# Usage: crates/bench/policy-bench.sh [SECONDS]   (release binaries built first, see below)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
target=${CARGO_TARGET_DIR:-${APIARY_CACHE:-$HOME/.cache/apiary}/target}/release
cargo build --release -q -p apiary -p apiary-bench -p apiary-testkit
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
  "$target/apiary" proxy "$name" "$@" -- "$target/apiary-testkit-server" --stdio >"$work/$name.out" 2>"$work/$name.err" &
  pid=$!; pids+=("$pid")
  for _ in $(seq 100); do url=$(grep -ho 'http://[^ ]*/mcp' "$work/$name.out" | head -1) && [ -n "$url" ] && break; sleep 0.1; done
}

start_proxy bare
"$target/apiary-bench" --url "$url" --pid "$pid" --pin-self 0 --pin-target 1 --warmup 2 --duration "$secs" --label "proxy, no policy" --header
start_proxy policy --oidc-issuer "$issuer" --oidc-audience apiary-bench --oidc-insecure-allow-http \
  --authz-config crates/bench/policy/cedar-20.json --audit-config "$work/audit.json"
"$target/apiary-bench" --url "$url" --pid "$pid" --pin-self 0 --pin-target 1 --warmup 2 --duration "$secs" --label "proxy, authn + Cedar (20) + audit" \
  --request-header "Authorization: Bearer $token"
echo "audit events written: $(wc -l <"$work/audit.log")" >&2
