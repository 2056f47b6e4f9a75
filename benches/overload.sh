#!/usr/bin/env bash
# Overload: bids at a multiple of capacity, open loop.
#
#   benches/overload.sh                    # capacity by wrk, then 2x capacity for 10 s
#   FACTOR=3 SECS=20 benches/overload.sh
#
# 1. One shard on SERVER_CPU (0), overload shedding on (the default), scoring
#    as configured; wrk -c64 on CLIENT_CPU (1) posts the IAB corpus closed
#    loop for 10 s: that req/s is the capacity.
# 2. benches/overload.rs sends FACTOR x capacity bids per second, open loop
#    (latency from each request's scheduled time, as wrk2 does), from
#    CLIENT_CPU, and prints counts and latency per status and the share of
#    200s within TMAX_MS (100).
# 3. /metrics: shed and tmax no-bid counters.
set -euo pipefail
cd "$(dirname "$0")/.."
FACTOR=${FACTOR:-2}
SECS=${SECS:-10}
CONNS=${CONNS:-256}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-18500}

need() { command -v "$1" >/dev/null 2>&1 || { echo "installing $2" >&2; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need taskset util-linux
cargo build --release --quiet
cargo bench --bench overload --no-run --quiet 2>/dev/null
GEN=$(ls -t target/release/deps/overload-* | grep -v '\.d$' | head -1)
if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  ORT_DYLIB_PATH=$(ls "$PWD"/target/ort/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -1 || true)
  export ORT_DYLIB_PATH
fi
[ -n "$ORT_DYLIB_PATH" ] || export ADSHARD__SCORING__ENABLED=false
TMP=$(mktemp -d)
cleanup() { [ -n "${APID:-}" ] && kill "$APID" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

ADSHARD_LOG=warn ADSHARD__EVENTS__SPOOL_DIR="$TMP/spool" \
  taskset -c "$SERVER_CPU" target/release/adshard serve --listen "127.0.0.1:$PORT" --cores "$SERVER_CPU" &
APID=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.05; done

taskset -c "$CLIENT_CPU" wrk -t1 -c64 -d10s -s benches/bid.lua "http://127.0.0.1:$PORT/openrtb2/bid" >"$TMP/wrk.out"
CAP=$(awk '/Requests\/sec/ {printf "%d", $2}' "$TMP/wrk.out")
echo "capacity (wrk closed loop, 64 connections): $CAP req/s"
curl -sf "http://127.0.0.1:$PORT/metrics" | grep -E '^adshard_(shed_total|no_bids_total\{.*tmax)' > "$TMP/before" || true
RATE=$(awk -v c="$CAP" -v f="$FACTOR" 'BEGIN {printf "%d", c * f}')
echo "open loop at ${FACTOR}x: $RATE req/s for ${SECS} s over $CONNS connections"
TARGET="127.0.0.1:$PORT" RATE=$RATE SECS=$SECS CONNS=$CONNS taskset -c "$CLIENT_CPU" "$GEN" --bench
echo "metrics before -> after:"
curl -sf "http://127.0.0.1:$PORT/metrics" | grep -E '^adshard_(shed_total|no_bids_total\{.*tmax)' > "$TMP/after" || true
paste -d' ' "$TMP/before" "$TMP/after" | awk '{print "  " $1 " " $2 " -> " $4}'
