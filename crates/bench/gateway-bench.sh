#!/usr/bin/env bash
# Issue 22's benchmark: sessions held and CPU per routed call through `apiary gateway` at 1, 64
# and 8,192 concurrent sessions, errors counted, against the bare proxy (`apiary proxy
# --target-uri`) in front of the same HTTP fixture server as the baseline.
#
# The test cluster holds, in namespace $BENCH_NS (default bench-gw, deleted by the trap), a
# Gateway `mcp-gateway`, an ExternalName Service `localhost` → the fixture's port, an HTTPRoute
# and an MCPServerRegistration (prefix `fixture_`); `apiary gateway --gateway
# $BENCH_NS/mcp-gateway` on this host serves it, and apiary-bench calls `fixture_echo`.
# With AUTH=1: the testkit's Keycloak (apiary-bench-keycloak), a client role `echo` for the
# route's server name given to user `mcp`, the seed's Secret and AuthPolicy (Keycloak URLs
# substituted, targeting the bench route) applied with kubectl, and every request carrying the
# user's token; the token exchanges Keycloak performed are counted from its event store.
#
# Every row starts the fixture and the proxy or gateway afresh (so RSS is that row's sessions),
# waits for it (bounded), measures (apiary-bench on CPU 0, the target on CPU 1) and stops it.
# Prints Markdown rows for docs/benchmarks.md and the targets met or missed.
#
# Usage: crates/bench/gateway-bench.sh [SECONDS]
#   KUBECONFIG   the test cluster (eval "$(cargo xtask cluster env)"), with the Gateway API and
#                MCPServerRegistration CRDs (AUTH=1: and the AuthPolicy CRD) installed
#   SIZES        sessions per row (default "1 64 8192")
#   AUTH=1       auth on (needs `cargo xtask test-env`'s Keycloak)
#   BENCH_NS     the namespace (default bench-gw)
#   PROFILE=debug NO_BUILD=1   a dry run of the script with the debug binaries already built
#                (its figures mean nothing)
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
sizes=${SIZES:-1 64 8192}
ns=${BENCH_NS:-bench-gw}
auth=${AUTH:-0}
# `apiary gateway --max-sessions`: its session table and in-process children (at most 16,384).
max_sessions=${MAX_SESSIONS:-16384}
profile=${PROFILE:-release}
target=${CARGO_TARGET_DIR:-${APIARY_CACHE:-$HOME/.cache/apiary}/target}/$profile

[ -n "${KUBECONFIG:-}" ] && [ -f "$KUBECONFIG" ] || {
  echo "KUBECONFIG must name the test cluster's kubeconfig (eval \"\$(cargo xtask cluster env)\")" >&2; exit 2; }
kubectl_bin=${KUBECTL:-$(ls "${APIARY_CACHE:-$HOME/.cache/apiary}"/k8s/*/kubectl 2>/dev/null | sort | tail -1)}
[ -x "${kubectl_bin:-}" ] || kubectl_bin=$(command -v kubectl) || { echo "no kubectl" >&2; exit 2; }
kc() { timeout 120 "$kubectl_bin" --kubeconfig "$KUBECONFIG" "$@"; }

if [ "${NO_BUILD:-0}" != 1 ]; then
  cargo build --profile "$([ "$profile" = debug ] && echo dev || echo "$profile")" -q -p apiary -p apiary-bench -p apiary-testkit
fi
apiary=${APIARY_BIN:-$target/apiary}
# Each session is a socket here and in the target (the gateway: one from the client, and its
# own to the backend): the usual soft limit of 1,024 files is far too few for 8,192.
ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
pids=()
stop() { # pid: SIGTERM, then SIGKILL after 10 s
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
}
cleanup() {
  for p in "${pids[@]}"; do stop "$p"; done
  kc delete namespace "$ns" --ignore-not-found --wait=true --timeout=110s >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started() { # file → $url: the first http://…/mcp printed to it (bounded wait)
  for _ in $(seq 300); do
    url=$(grep -ho 'http://[^ ]*/mcp' "$1" 2>/dev/null | head -1) && [ -n "$url" ] && return 0
    sleep 0.1
  done
  echo "no URL in $1" >&2; cat "$1" "${1%.out}.err" >&2 2>/dev/null; return 1
}
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

# The fixture server on one port for the whole run, so the registration's Service stays valid.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_fixture() {
  "$target/apiary-testkit-server" --http "127.0.0.1:$port" >"$work/fixture.out" 2>"$work/fixture.err" &
  fixture_pid=$!; pids+=("$fixture_pid")
  started "$work/fixture.out"; fixture_url=$url
}

# Auth on: Keycloak, the bench's role, the user's token.
if [ "$auth" = 1 ]; then
  coproc KEYCLOAK { exec "$target/apiary-bench-keycloak" 2>"$work/keycloak.err"; }
  pids+=("$KEYCLOAK_PID")
  read -r -t 240 kc_line <&"${KEYCLOAK[0]}" || { echo "Keycloak did not start:" >&2; cat "$work/keycloak.err" >&2; exit 1; }
  echo "$kc_line" >"$work/keycloak.json"; chmod 600 "$work/keycloak.json"
  issuer=$(json "$work/keycloak.json" 'd["issuer"]')
  token_endpoint=$(json "$work/keycloak.json" 'd["token_endpoint"]')
  base=${issuer%/realms/mcp}
  admin_token() {
    curl -fsS --max-time 30 "$base/realms/master/protocol/openid-connect/token" -d grant_type=password \
      -d client_id=admin-cli --data-urlencode "username=$(json "$work/keycloak.json" 'd["admin_username"]')" \
      --data-urlencode "password=$(json "$work/keycloak.json" 'd["admin_password"]')" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
  }
  admin() { # METHOD PATH [JSON]
    curl -fsS --max-time 30 -X "$1" -H "Authorization: Bearer $(admin_token)" -H 'Content-Type: application/json' \
      "$base/admin/realms/mcp$2" ${3:+--data "$3"}
  }
  # The seed's policy lets a call through when the tool is among the caller's
  # resource_access[<x-mcp-servername>].roles: the realm has roles for kubernetes-mcp-server's
  # tools under client `mcp-test/kubernetes-mcp`; the bench adds client `$ns/fixture-mcp` with
  # role `echo`, in mcp-gateway's scope (so exchanged tokens carry it) and given to user `mcp`,
  # as the realm does for the seed's client.
  server_name="$ns/fixture-mcp"
  admin POST /clients "{\"clientId\":\"$server_name\",\"enabled\":true,\"publicClient\":false,\"standardFlowEnabled\":false,\"directAccessGrantsEnabled\":false,\"fullScopeAllowed\":false}"
  client_uuid() { admin GET "/clients?clientId=$(python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1")" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])'; }
  fixture_client=$(client_uuid "$server_name"); gateway_client=$(client_uuid mcp-gateway)
  admin POST "/clients/$fixture_client/roles" '{"name":"echo","description":"may call tool echo"}'
  role=$(admin GET "/clients/$fixture_client/roles/echo")
  admin POST "/clients/$gateway_client/scope-mappings/clients/$fixture_client" "[$role]"
  user=$(admin GET '/users?username=mcp&exact=true' | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
  admin POST "/users/$user/role-mappings/clients/$fixture_client" "[$role]"
  # Token exchanges are counted from Keycloak's event store.
  admin PUT /events/config '{"eventsEnabled":true,"enabledEventTypes":["TOKEN_EXCHANGE","TOKEN_EXCHANGE_ERROR"],"eventsExpiration":3600}'
  exchanges() { admin GET '/events?type=TOKEN_EXCHANGE&max=100000' | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
  umask 077
  curl -fsS --max-time 30 "$token_endpoint" -d grant_type=password -d client_id=mcp-client -d username=mcp \
    -d password=mcp -d scope=openid | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' \
    >"$work/token"
  umask 022
  bearer=(--bearer-file "$work/token")
else
  bearer=()
fi

# The cluster side.
kc delete namespace "$ns" --ignore-not-found --wait=true --timeout=110s >/dev/null
kc get crd httproutes.gateway.networking.k8s.io gateways.gateway.networking.k8s.io \
  mcpserverregistrations.mcp.kuadrant.io >/dev/null
kc apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: $ns}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: mcp-gateway, namespace: $ns}
spec:
  gatewayClassName: apiary
  listeners:
    - {name: mcp, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: Same}}}
---
apiVersion: v1
kind: Service
metadata: {name: fixture-mcp-external, namespace: $ns}
spec:
  type: ExternalName
  externalName: localhost
  ports: [{name: http, port: $port, targetPort: $port, protocol: TCP, appProtocol: http}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: fixture-mcp, namespace: $ns}
spec:
  parentRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: mcp-gateway, sectionName: mcp}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /mcp}}]
      backendRefs: [{group: "", kind: Service, name: fixture-mcp-external, port: $port}]
---
apiVersion: mcp.kuadrant.io/v1alpha1
kind: MCPServerRegistration
metadata: {name: fixture, namespace: $ns}
spec:
  prefix: fixture_
  targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: fixture-mcp}
YAML
if [ "$auth" = 1 ]; then
  kc get crd authpolicies.kuadrant.io >/dev/null
  # The seed's Secret (its kubectl command: the value already `Basic <base64 id:secret>`).
  kc create secret generic token-exchange -n "$ns" \
    --from-literal=oauth-client-basic-auth="Basic $(printf 'mcp-gateway:mcp-gateway-test-secret' | base64 -w0)" \
    >/dev/null
  sed -e "s|https://keycloak.example.com/realms/mcp/protocol/openid-connect/token|$token_endpoint|" \
    -e "s|https://keycloak.example.com/realms/mcp|$issuer|" \
    -e "s|namespace: mcp-test|namespace: $ns|" -e "s|name: kubernetes-mcp$|name: fixture-mcp|" \
    crates/authpolicy/tests/fixtures/seed004-authpolicy.yaml | kc apply -f - >/dev/null
fi

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
warmup_for() { # sessions → seconds: enough for every session's handshake on a loaded machine
  if [ "$1" -ge 1024 ]; then echo $((10 + $1 / 256)); else echo 2; fi
}
load() { # kind sessions url pid
  local kind=$1 n=$2 url=$3 pid=$4 tool=echo
  [ "$kind" = gateway ] && tool=fixture_echo
  local extra=()
  [ "$kind" = gateway ] && extra=("${bearer[@]}")
  "$target/apiary-bench" --url "$url" --pid "$pid" --pin-self 0 --pin-target 1 --sessions "$n" \
    --warmup "$(warmup_for "$n")" --duration "$secs" --request-timeout-ms 30000 --tool "$tool" \
    --label "$kind" --json "$work/$kind-$n.json" "${extra[@]}" >/dev/null 2>"$work/$kind-$n.bench.err" || {
      echo "apiary-bench failed:" >&2; cat "$work/$kind-$n.bench.err" >&2; return 1; }
}

for n in $sizes; do
  # Baseline: the bare proxy (transparent reverse proxy) in front of the fixture.
  start_fixture
  "$apiary" proxy bench-gw-bare --target-uri "$fixture_url" \
    >"$work/proxy.out" 2>"$work/proxy.err" &
  proxy_pid=$!; pids+=("$proxy_pid")
  started "$work/proxy.out"
  load proxy "$n" "$url" "$proxy_pid"
  stop "$proxy_pid"; stop "$fixture_pid"

  start_fixture
  before=0; [ "$auth" = 1 ] && before=$(exchanges)
  gw_flags=(); [ "$auth" = 1 ] && gw_flags=(--allow-http-issuers)
  "$apiary" gateway --kubeconfig "$KUBECONFIG" --listen 127.0.0.1:0 --gateway "$ns/mcp-gateway" \
    --max-sessions "$max_sessions" "${gw_flags[@]}" >"$work/gateway.out" 2>"$work/gateway.err" &
  gateway_pid=$!; pids+=("$gateway_pid")
  started "$work/gateway.out"; gateway_url=$url
  # Served once /status lists the registration (bounded).
  for i in $(seq 120); do
    curl -fsS --max-time 5 "${gateway_url%/mcp}/status" 2>/dev/null | grep -q "\"$ns/fixture\"" && break
    [ "$i" = 120 ] && { echo "the gateway never served $ns/fixture:" >&2; tail -20 "$work/gateway.err" >&2; exit 1; }
    sleep 0.5
  done
  load gateway "$n" "$gateway_url" "$gateway_pid"
  [ "$auth" = 1 ] && echo $(($(exchanges) - before)) >"$work/exchanges-$n"
  stop "$gateway_pid"; stop "$fixture_pid"
done

echo
echo "| run | sessions | open at start / end | calls/s | p50 ms | p99 ms | max ms | errors | target CPU µs/call | target RSS MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"
for n in $sizes; do
  for kind in proxy gateway; do
    python3 - "$work/$kind-$n.json" "$kind" "$auth" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); kind = sys.argv[2]; auth = sys.argv[3] == "1"
label = {"proxy": "bare proxy (--target-uri)", "gateway": "gateway" + (", auth on" if auth else ", auth off")}[kind]
l = r["latency_us"]; t = r["target"]
errors = str(r["errors"]) + ("".join(f" ({k} {v})" for k, v in r["errors_by_kind"].items()))
cpu = t["cpu"]["cpu_us_per_call"]
print(f"| {label} | {r['sessions']} | {r['sessions_ready_at_start']} / {r['sessions_ready_at_end']} | "
      f"{r['calls_per_s']:.0f} | {l['p50']/1000:.2f} | {l['p99']/1000:.2f} | {l['max']/1000:.1f} | {errors} | "
      f"{'-' if cpu is None else f'{cpu:.1f}'} | {t['rss_kib']/1024:.1f} |")
PY
  done
done
echo
for n in $sizes; do
  python3 - "$work/proxy-$n.json" "$work/gateway-$n.json" "$n" <<'PY'
import json, sys
p, g, n = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
pc, gc = p["target"]["cpu"]["cpu_us_per_call"], g["target"]["cpu"]["cpu_us_per_call"]
ratio = f"{gc / pc:.2f}x" if pc and gc else "n/a"
met = "met" if pc and gc and gc <= 2 * pc else "missed"
print(f"- {n} sessions: gateway CPU per call {ratio} the bare proxy's (target <= 2x: {met}); "
      f"failed requests {g['errors']} (warm-up {g['warmup_errors']}), sessions open at the end "
      f"{g['sessions_ready_at_end']} of {n}")
PY
  if [ "$auth" = 1 ]; then echo "  token exchanges at Keycloak during the $n-session gateway row: $(cat "$work/exchanges-$n")"; fi
done
echo
echo "Command: crates/bench/gateway-bench.sh $secs (SIZES=\"$sizes\" AUTH=$auth); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
