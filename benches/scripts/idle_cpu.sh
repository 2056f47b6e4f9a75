#!/usr/bin/env bash
# CPU an idle server burns: per-thread CPU time from /proc over a window with
# no traffic, default config (every core a shard, spinning and the overload
# monitor on), printed as % of a core per thread.
#
#   benches/scripts/idle_cpu.sh               # the release build
#   BIN=/path/to/adshard SECONDS_IDLE=20 benches/scripts/idle_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
. benches/scripts/lib.sh
build_server
SECONDS_IDLE=${SECONDS_IDLE:-10}
PORT=${PORT:-18499}
SPOOL=$(mktemp -d)
ADSHARD__EVENTS__SPOOL_DIR=$SPOOL ADSHARD_LOG=warn "$BIN" serve --listen "127.0.0.1:$PORT" 2>/dev/null &
P=$!
trap 'kill $P 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$SPOOL" ${BENCH_SPOOL:+"$BENCH_SPOOL"}' EXIT
wait_ok "http://127.0.0.1:$PORT/healthz"
sleep 2
declare -A before
for t in /proc/$P/task/*; do before[$t]=$(awk '{print $14+$15}' "$t/stat"); done
sleep "$SECONDS_IDLE"
hz=$(getconf CLK_TCK)
for t in /proc/$P/task/*; do
  d=$(( $(awk '{print $14+$15}' "$t/stat") - ${before[$t]:-0} ))
  [ "$d" -gt 0 ] && printf '%-12s %5.1f%% of a core\n' "$(cat "$t/comm")" "$(echo "$d * 100 / $hz / $SECONDS_IDLE" | bc -l)"
done
