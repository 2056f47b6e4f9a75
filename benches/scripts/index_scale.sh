#!/usr/bin/env bash
# Bid throughput against the size of the campaign index, beside nginx, in one run.
#
#   benches/scripts/index_scale.sh                  # 10 (built-in), 20000, 100000 campaigns
#   benches/scripts/index_scale.sh 10 100000        # the counts to measure
#   DURATION=8 ROUNDS=3 SCORING=false benches/scripts/index_scale.sh
#
# For each count, synthetic campaigns from `adshard gen-campaigns --count N`
# (10: the embedded default set); adshard serves them with one shard on
# SERVER_CPU (default 0), CTR scoring on (SCORING=false turns it off), and
# wrk on CLIENT_CPU (default 1) POSTs the IAB corpus (benches/scripts/bid.lua). Rounds
# alternate nginx (one worker, `return 200`, same core) and adshard; the table
# gives medians: adshard req/s, bids per request (impressions bid, from /metrics),
# nginx req/s, adshard / nginx, and adshard / adshard at the first count.
# Needs: wrk, nginx (Debian: wrk nginx-light), taskset; installs them if missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-8}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SCORING=${SCORING:-true}
A_PORT=${A_PORT:-18490}
N_PORT=${N_PORT:-18491}
COUNTS=("$@")
[ ${#COUNTS[@]} -gt 0 ] || COUNTS=(10 20000 100000)

. benches/scripts/lib.sh
need wrk wrk
need nginx nginx-light
need taskset util-linux
build_server
TMP=$(mktemp -d)
trap bench_cleanup EXIT
start_nginx "$N_PORT" /openrtb2/bid "$SERVER_CPU"

run() { # port -> req/s
  taskset -c "$CLIENT_CPU" wrk -t1 "-c$CONNS" "-d${DURATION}s" -s benches/scripts/bid.lua \
    "http://127.0.0.1:$1/openrtb2/bid" >"$TMP/wrk.out"
  grep -q "Non-2xx" "$TMP/wrk.out" && { echo "non-2xx responses on port $1:" >&2; cat "$TMP/wrk.out" >&2; exit 1; }
  awk '/Requests\/sec/ {print $2}' "$TMP/wrk.out"
}
metric() { # name-prefix -> sum over its samples
  curl -sf "http://127.0.0.1:$A_PORT/metrics" | awk -v p="$1" 'index($0, p) == 1 {s += $NF} END {print s + 0}'
}

rows=()
first=""
for n in "${COUNTS[@]}"; do
  env=()
  if [ "$n" != 10 ]; then
    "$BIN" gen-campaigns --count "$n" >"$TMP/campaigns.json"
    env+=("ADSHARD__CAMPAIGNS__PATH=$TMP/campaigns.json")
  fi
  t0=$(date +%s%N)
  env "${env[@]}" ADSHARD__SCORING__ENABLED="$SCORING" ADSHARD__OVERLOAD__ENABLED=false ADSHARD_LOG=warn \
    taskset -c "$SERVER_CPU" "$BIN" serve --listen "127.0.0.1:$A_PORT" --cores "$SERVER_CPU" &
  APID=$!
  wait_ok "http://127.0.0.1:$A_PORT/healthz" 60
  echo "$n campaigns: serving after $(( ($(date +%s%N) - t0) / 1000000 )) ms, RSS $(awk '/VmRSS/ {print $2 " " $3}' /proc/$APID/status)" >&2
  DURATION=2 run "$N_PORT" >/dev/null; DURATION=2 run "$A_PORT" >/dev/null
  ns=(); as=()
  req0=$(metric 'adshard_http_requests_total{shard="0",route="bid"'); bid0=$(metric 'adshard_events_total{shard="0",kind="bid"')
  for r in $(seq "$ROUNDS"); do
    v=$(run "$N_PORT"); echo "  round $r nginx   $v req/s" >&2; ns+=("$v")
    v=$(run "$A_PORT"); echo "  round $r adshard $v req/s" >&2; as+=("$v")
  done
  req1=$(metric 'adshard_http_requests_total{shard="0",route="bid"'); bid1=$(metric 'adshard_events_total{shard="0",kind="bid"')
  kill "$APID"; wait "$APID" 2>/dev/null || true; APID=""
  mn=$(median "${ns[@]}"); ma=$(median "${as[@]}")
  [ -n "$first" ] || first=$ma
  rows+=("$(awk -v n="$n" -v a="$ma" -v g="$mn" -v f="$first" -v r="$((req1 - req0))" -v b="$((bid1 - bid0))" \
    'BEGIN {printf "| %s | %.1fk | %.2f | %.1fk | %.3f | %.3f |", n, a/1000, r ? b/r : 0, g/1000, a/g, a/f}')")
done
echo "scoring=$SCORING conns=$CONNS duration=${DURATION}s rounds=$ROUNDS server_cpu=$SERVER_CPU client_cpu=$CLIENT_CPU"
echo "| campaigns | adshard req/s | bids/req | nginx req/s | ratio | vs ${COUNTS[0]} |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
