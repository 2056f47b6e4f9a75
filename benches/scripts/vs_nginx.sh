#!/usr/bin/env bash
# Throughput of adshard beside nginx on the same core, measured in one run.
#
#   benches/scripts/vs_nginx.sh                     # GET /healthz, 10 s per round, 3 rounds
#   DURATION=20 ROUNDS=5 benches/scripts/vs_nginx.sh
#   SCRIPT=benches/scripts/bid.lua URL_PATH=/openrtb2/bid benches/scripts/vs_nginx.sh   (once the bidder lands)
#
# The server under test (adshard with one shard, or one nginx worker) is pinned
# to SERVER_CPU (default 0) and wrk to CLIENT_CPU (default 1). nginx answers the
# same path with the same 11-byte body adshard's /healthz sends. Rounds
# alternate nginx and adshard; the ratio is adshard/nginx of the medians.
# Each round also reads how busy the server's core was (/proc/stat) and its
# CPU time per request: nginx under 100% busy means wrk set its rate, and the
# ratio is then against the client's ceiling rather than nginx's.
# Overload shedding is off (OVERLOAD=true turns it on): closed-loop wrk with
# enough connections keeps a standing queue, which the shard would shed, and
# this measures how much it serves.
# Needs: wrk, nginx (Debian: wrk nginx-light), taskset; installs them if missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
URL_PATH=${URL_PATH:-/healthz}
SCRIPT=${SCRIPT:-}
SPIN_US=${SPIN_US:-10000}
OVERLOAD=${OVERLOAD:-false}
A_PORT=${A_PORT:-18480}
N_PORT=${N_PORT:-18481}

. benches/scripts/lib.sh
need wrk wrk
need nginx nginx-light
need taskset util-linux
build_server
TMP=$(mktemp -d)
trap bench_cleanup EXIT
start_nginx "$N_PORT" "$URL_PATH" "$SERVER_CPU"

ADSHARD__SERVER__SPIN_BEFORE_PARK_US=$SPIN_US ADSHARD__OVERLOAD__ENABLED=$OVERLOAD ADSHARD_LOG=warn \
  taskset -c "$SERVER_CPU" "$BIN" serve --listen "127.0.0.1:$A_PORT" --cores "$SERVER_CPU" &
APID=$!
wait_ok "http://127.0.0.1:$A_PORT/healthz"
curl -sf "http://127.0.0.1:$N_PORT$URL_PATH" >/dev/null

run() { # port -> req/s; the server core's busy share during the run -> $TMP/busy
  local args=(-t1 "-c$CONNS" "-d${DURATION}s" --latency) j0
  [ -n "$SCRIPT" ] && args+=(-s "$SCRIPT")
  j0=$(core_jiffies "$SERVER_CPU")
  taskset -c "$CLIENT_CPU" wrk "${args[@]}" "http://127.0.0.1:$1$URL_PATH" >"$TMP/wrk.out"
  busy_share "$j0" "$(core_jiffies "$SERVER_CPU")" >"$TMP/busy"
  grep -q "Non-2xx" "$TMP/wrk.out" && { echo "non-2xx responses on port $1:" >&2; cat "$TMP/wrk.out" >&2; exit 1; }
  awk '/Requests\/sec/ {print $2}' "$TMP/wrk.out"
  awk '/ 99%/ {print "      p99 " $2 > "/dev/stderr"}' "$TMP/wrk.out"
}
# Warm both up.
DURATION=2 run "$N_PORT" >/dev/null 2>&1; DURATION=2 run "$A_PORT" >/dev/null 2>&1
ns=(); as=(); nb=(); ab=()
for r in $(seq "$ROUNDS"); do
  n=$(run "$N_PORT"); b=$(cat "$TMP/busy"); echo "round $r nginx   $n req/s, core busy $b" >&2; ns+=("$n"); nb+=("$b")
  a=$(run "$A_PORT"); b=$(cat "$TMP/busy"); echo "round $r adshard $a req/s, core busy $b" >&2; as+=("$a"); ab+=("$b")
done
mn=$(median "${ns[@]}"); ma=$(median "${as[@]}")
mnb=$(median "${nb[@]}"); mab=$(median "${ab[@]}")
echo "path=$URL_PATH conns=$CONNS duration=${DURATION}s rounds=$ROUNDS server_cpu=$SERVER_CPU client_cpu=$CLIENT_CPU"
echo "nginx_rps=$mn adshard_rps=$ma ratio=$(awk -v a="$ma" -v n="$mn" 'BEGIN {printf "%.3f", a/n}')"
awk -v n="$mn" -v a="$ma" -v nb="$mnb" -v ab="$mab" \
  'BEGIN {printf "nginx_core_busy=%.2f nginx_core_us_per_req=%.1f adshard_core_busy=%.2f adshard_core_us_per_req=%.1f\n", nb, nb * 1e6 / n, ab, ab * 1e6 / a}'
