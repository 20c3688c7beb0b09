#!/usr/bin/env bash
# Instructions per request of the proxy with the policy of policy-bench.sh, counted by callgrind,
# which machine load does not change (unlike CPU time; VMs often lack hardware counters). Each
# mode runs the proxy under valgrind with one session for SECONDS after a 4 s warm-up (counters
# zeroed after it), then prints the instructions per request of the whole proxy process and of
# the policy's parts. Requests = calls of the streamable POST dispatch.
# Usage: crates/bench/policy-callgrind.sh [SECONDS] [MODE...]   MODE: bare policy authn audit
# (default: bare policy). APIARY_BIN=/path/to/apiary measures that binary; KEEP=1 keeps the
# callgrind files (the work directory is not removed). Needs valgrind.
# Note: valgrind hides SHA extensions, so SHA-256 (the verified-token key) runs in software here.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}; shift || true
modes=("$@"); [ ${#modes[@]} -gt 0 ] || modes=(bare policy)
target=${CARGO_TARGET_DIR:-${APIARY_CACHE:-$HOME/.cache/apiary}/target}/release
cargo build --release -q -p apiary -p apiary-bench -p apiary-testkit
apiary=${APIARY_BIN:-$target/apiary}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT

"$target/apiary-testkit-issuer" --audience apiary-bench --groups engineering >"$work/issuer.json" &
pids+=($!)
for _ in $(seq 50); do [ -s "$work/issuer.json" ] && break; sleep 0.1; done
issuer=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["issuer"])' "$work/issuer.json")
token=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$work/issuer.json")
printf '{"component":"bench","logFile":"%s/audit.log"}\n' "$work" >"$work/audit.json"
oidc=(--oidc-issuer "$issuer" --oidc-audience apiary-bench --oidc-insecure-allow-http)

for mode in "${modes[@]}"; do
  case $mode in
    bare) args=() ;;
    policy) args=("${oidc[@]}" --authz-config crates/bench/policy/cedar-20.json --audit-config "$work/audit.json") ;;
    authn) args=("${oidc[@]}") ;;
    audit) args=(--audit-config "$work/audit.json") ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
  out="$work/cg.$mode"
  valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$apiary" proxy "cg-$mode" "${args[@]}" -- "$target/apiary-testkit-server" --stdio >"$work/p.out" 2>"$work/p.err" &
  pid=$!; pids+=("$pid")
  url=
  for _ in $(seq 600); do url=$(grep -ho 'http://[^ ]*/mcp' "$work/p.out" | head -1) && [ -n "$url" ] && break; sleep 0.1; done
  "$target/apiary-bench" --url "$url" --sessions 1 --warmup 4 --duration "$secs" \
    --request-header "Authorization: Bearer $token" >/dev/null &
  bench=$!
  sleep 4; callgrind_control -z "$pid" >/dev/null
  wait "$bench"
  callgrind_control -d "$pid" >/dev/null
  kill "$pid"; wait "$pid" 2>/dev/null || true
  : >"$work/p.out"
  python3 - "$out.1" "$mode" <<'PY'
import re, subprocess, sys
path, mode = sys.argv[1], sys.argv[2]
ann = lambda *a: subprocess.run(["callgrind_annotate", *a, path], capture_output=True, text=True).stdout
total = int(re.search(r"([\d,]+) \S+\s+PROGRAM TOTALS", ann()).group(1).replace(",", ""))
tree = ann("--tree=caller", "--inclusive=yes")
end = r"(?: \[[^\n]*\])?$"  # the object file is shown only sometimes
m = re.search(r"< [^\n]*streamable::post\w*::\{\{closure\}\} \(([\d,]+)x\)" + end + r"\n[^\n]*\*[^\n]*dispatch::dispatch::\{\{closure\}\}" + end, tree, re.M)
n = int(m.group(1).replace(",", ""))
print(f"{mode}: {n} requests, {total // n} instructions per request (whole proxy)")
parts = {"authentication": r"authn/mod.rs:apiary_proxy::guard::front::front_layer::\{\{closure\}\}$",
         "  of which the token's SHA-256": r"verified.rs:apiary_policy::authn::verified::key" + end,
         "authorization (Authorizer::decide)": r"authz/mod.rs:apiary_policy::authz::Authorizer::decide" + end,
         "audit event (Guard::record)": r"guard/audit.rs:apiary_proxy::guard::audit::<impl apiary_proxy::guard::Guard>::record" + end}
found = {}
for line in ann("--inclusive=yes").splitlines():
    for name, pat in parts.items():
        if name not in found and re.search(pat, line.strip()):
            found[name] = int(line.split()[0].replace(",", "")) // n
for name in parts:
    if name in found:
        print(f"  {name}: {found[name]}")
PY
done
