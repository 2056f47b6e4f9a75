#!/usr/bin/env bash
# Bid latency and throughput with and without event write-behind to a local
# Cassandra node, measured in one run.
#
#   benches/scripts/write_behind.sh                         # 3 rounds x 10 s per mode, 16 connections
#   DURATION=20 ROUNDS=5 CONNS=4 benches/scripts/write_behind.sh
#
# One Cassandra 5.0 node (deploy/cassandra/cassandra.sh) runs throughout, so
# both modes pay for its idle work; rounds alternate the modes:
#   spool  events go to the spool only (the embedded default)
#   db     events are written behind to Cassandra ([events.db] nodes)
# The adshard shard is pinned to SERVER_CPU (0), wrk to CLIENT_CPU (1);
# Cassandra floats unless CASS_CPU pins it (CASS_CPU=1 keeps it off the
# shard's core, nearer a production layout where the database has its own
# hosts); adshard's writer threads float. wrk posts the IAB corpus
# (benches/scripts/bid.lua) with -c CONNS, closed loop; reported: median req/s, p50
# and p99 per mode; per round the events, the CPU time of the event writer
# threads (db-writer, spool-N) per event, and for db mode the events stored
# and spilled.
# Needs: wrk, taskset, Java 17 and Maven (installs wrk if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-16}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
CASS_CPU=${CASS_CPU:-}
PORT=${PORT:-18490}
NATIVE=${NATIVE:-19142}
STORAGE=${STORAGE:-17142}
export CASSANDRA_HEAP=${CASSANDRA_HEAP:-2g}

. benches/scripts/lib.sh
need wrk wrk
need taskset util-linux
build_server
deploy/cassandra/cassandra.sh fetch
TMP=$(mktemp -d)
cleanup() {
  [ -n "${APID:-}" ] && kill "$APID" 2>/dev/null || true
  [ -n "${CPID:-}" ] && kill -9 "$CPID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$TMP" ${BENCH_SPOOL:+"$BENCH_SPOOL"}
}
trap cleanup EXIT

if [ -n "$CASS_CPU" ]; then
  taskset -c "$CASS_CPU" deploy/cassandra/cassandra.sh run "$TMP/cass" "$NATIVE" "$STORAGE" >"$TMP/cass.log" 2>&1 &
else
  deploy/cassandra/cassandra.sh run "$TMP/cass" "$NATIVE" "$STORAGE" >"$TMP/cass.log" 2>&1 &
fi
CPID=$!
for i in $(seq 300); do
  (exec 3<>"/dev/tcp/127.0.0.1/$NATIVE") 2>/dev/null && break
  kill -0 "$CPID" 2>/dev/null || { cat "$TMP/cass.log" >&2; exit 1; }
  [ "$i" -eq 300 ] && { echo "Cassandra did not start" >&2; exit 1; }
  sleep 1
done

start() { # mode
  local env=(ADSHARD_LOG=warn "ADSHARD__EVENTS__SPOOL_DIR=$TMP/spool-$1")
  if [ "$1" = db ]; then
    env+=("ADSHARD__EVENTS__DB__NODES=[\"127.0.0.1:$NATIVE\"]"
      "ADSHARD__EVENTS__DB__KEYSPACE=bench_bids"
      "ADSHARD__EVENTS__DB__REPLICATION={'class': 'SimpleStrategy', 'replication_factor': 1}")
  fi
  env "${env[@]}" taskset -c "$SERVER_CPU" "$BIN" serve --listen "127.0.0.1:$PORT" --cores "$SERVER_CPU" &
  APID=$!
  wait_ok "http://127.0.0.1:$PORT/readyz"
}
stop() {
  kill -TERM "$APID"; wait "$APID" || true; APID=
}
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.3f", v}'; }
run() { # mode -> "rps p50 p99"
  taskset -c "$CLIENT_CPU" wrk -t1 "-c$CONNS" "-d${DURATION}s" --latency -s benches/scripts/bid.lua \
    "http://127.0.0.1:$PORT/openrtb2/bid" >"$TMP/wrk.out"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$TMP/wrk.out")
  p50=$(awk '/ 50%/ {print $2}' "$TMP/wrk.out" | to_ms)
  p99=$(awk '/ 99%/ {print $2}' "$TMP/wrk.out" | to_ms)
  echo "$rps $p50 $p99"
}
# CPU seconds used so far by the server's threads whose name starts with $1.
thread_cpu() {
  local hz t=0 f
  hz=$(getconf CLK_TCK)
  for f in /proc/"$APID"/task/*; do
    if [[ "$(cat "$f/comm" 2>/dev/null)" == "$1"* ]]; then
      t=$((t + $(awk '{print $14 + $15}' "$f/stat")))
    fi
  done
  awk -v t="$t" -v hz="$hz" 'BEGIN {printf "%.2f", t / hz}'
}
metric() { curl -sf "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" 'index($0, m) == 1 {s += $NF} END {print s + 0}'; }

declare -A RPS P50 P99
for mode in spool db; do start "$mode"; DURATION=2 run "$mode" >/dev/null; stop; done
for r in $(seq "$ROUNDS"); do
  for mode in spool db; do
    start "$mode"
    read -r rps p50 p99 < <(run "$mode")
    sleep 1
    events=$(metric 'adshard_events_total{')
    writer_cpu=$(awk -v a="$(thread_cpu db-writer)" -v b="$(thread_cpu spool-)" 'BEGIN {print a + b}')
    extra=" events=$events writer_cpu=${writer_cpu}s ($(awk -v c="$writer_cpu" -v n="$events" 'BEGIN {printf "%.2f", n ? c * 1e6 / n : 0}') us/event)"
    if [ "$mode" = db ]; then
      extra+=" stored=$(metric adshard_db_events_stored_total) spilled=$(metric adshard_events_spilled_total)"
    fi
    stop
    echo "round $r $mode: $rps req/s p50 ${p50} ms p99 ${p99} ms$extra" >&2
    RPS[$mode]+="$rps "; P50[$mode]+="$p50 "; P99[$mode]+="$p99 "
  done
done
echo "conns=$CONNS duration=${DURATION}s rounds=$ROUNDS server_cpu=$SERVER_CPU client_cpu=$CLIENT_CPU cassandra_cpu=${CASS_CPU:-any} (medians)"
for mode in spool db; do
  # shellcheck disable=SC2086
  echo "$mode: rps=$(median ${RPS[$mode]}) p50_ms=$(median ${P50[$mode]}) p99_ms=$(median ${P99[$mode]})"
done
