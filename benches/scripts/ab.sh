#!/usr/bin/env bash
# A/B throughput of two settings of one build, run after run on the same
# cores: the way to see a few percent on a VM whose runs move 15-30%.
#
#   A="ADSHARD__IVT__ENABLED=true" B="ADSHARD__IVT__ENABLED=false" PAIRS=10 benches/scripts/ab.sh
#   BIN_A=old/adshard BIN_B=target/release/adshard PAIRS=8 benches/scripts/ab.sh   # two builds
#
# Each pair starts A and B afresh (order alternating: AB, BA, ...), warms
# each up for 2 s, then drives it for DURATION seconds (default 5) with wrk
# -c CONNS (64) on CLIENT_CPU (1), the server on SERVER_CPU (0), POSTing the
# IAB corpus (benches/scripts/bid.lua). Prints each pair's B/A and A/B
# req/s, then the geometric mean of A/B with a 95% interval (t over the
# log ratios): "within 3%" is shown when the interval lies inside 0.97..1.03.
# Extra env for both sides: the variables lib.sh sets (IVT device and rate
# checks off), plus whatever the caller exports.
set -euo pipefail
cd "$(dirname "$0")/../.."
PAIRS=${PAIRS:-10}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-18492}
A=${A:-}
B=${B:-}

. benches/scripts/lib.sh
need wrk wrk
need taskset util-linux
build_server
BIN_A=${BIN_A:-$BIN}
BIN_B=${BIN_B:-$BIN}
TMP=$(mktemp -d)
trap bench_cleanup EXIT

run() { # bin "env settings" -> req/s
  # shellcheck disable=SC2086
  env $2 ADSHARD__OVERLOAD__ENABLED=false ADSHARD_LOG=error \
    taskset -c "$SERVER_CPU" "$1" serve --listen "127.0.0.1:$PORT" --cores "$SERVER_CPU" &
  APID=$!
  wait_ok "http://127.0.0.1:$PORT/healthz" 60
  taskset -c "$CLIENT_CPU" wrk -t1 "-c$CONNS" -d2s -s benches/scripts/bid.lua \
    "http://127.0.0.1:$PORT/openrtb2/bid" >/dev/null
  local c0 c1
  c0=$(cpu_ticks "$APID")
  taskset -c "$CLIENT_CPU" wrk -t1 "-c$CONNS" "-d${DURATION}s" -s benches/scripts/bid.lua \
    "http://127.0.0.1:$PORT/openrtb2/bid" >"$TMP/wrk.out"
  c1=$(cpu_ticks "$APID")
  kill "$APID"; wait "$APID" 2>/dev/null || true; APID=""
  grep -q "Non-2xx" "$TMP/wrk.out" && { echo "non-2xx responses:" >&2; cat "$TMP/wrk.out" >&2; exit 1; }
  # req/s, and the server's CPU time (user + system) per request in us
  awk -v d="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" -v s="$DURATION" \
    '/Requests\/sec/ {printf "%s %.2f\n", $2, d / hz * 1e6 / ($2 * s)}' "$TMP/wrk.out"
}
cpu_ticks() { # pid -> utime + stime of all its threads, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}

echo "A: ${BIN_A} ${A:-(defaults)}"
echo "B: ${BIN_B} ${B:-(defaults)}"
main() {
ratios=(); cpus=()
for p in $(seq "$PAIRS"); do
  if [ $((p % 2)) -eq 1 ]; then
    read -r a ca < <(run "$BIN_A" "$A"); read -r b cb < <(run "$BIN_B" "$B")
  else
    read -r b cb < <(run "$BIN_B" "$B"); read -r a ca < <(run "$BIN_A" "$A")
  fi
  r=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.4f", a / b}')
  rc=$(awk -v a="$ca" -v b="$cb" 'BEGIN {printf "%.4f", a / b}')
  echo "pair $p: A $a req/s ($ca us CPU/req), B $b req/s ($cb us CPU/req), A/B $r, CPU/req A/B $rc"
  ratios+=("$r"); cpus+=("$rc")
done
echo -n "throughput: "
summary "${ratios[@]}"
echo -n "server CPU time per request: "
summary "${cpus[@]}"
}
summary() {
printf '%s\n' "$@" | awk '
  { l[NR] = log($1); s += l[NR] }
  END {
    n = NR; m = s / n
    for (i = 1; i <= n; i++) v += (l[i] - m) ^ 2
    sd = n > 1 ? sqrt(v / (n - 1)) : 0
    # two-sided 95% t quantiles for n-1 degrees of freedom (1..30), else 1.96
    split("12.71 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 2.131 2.120 2.110 2.101 2.093 2.086 2.080 2.074 2.069 2.064 2.060 2.056 2.052 2.048 2.045 2.042", t, " ")
    q = (n - 1 >= 1 && n - 1 <= 30) ? t[n - 1] : 1.96
    h = n > 1 ? q * sd / sqrt(n) : 0
    printf "A/B geometric mean %.4f, 95%% interval %.4f .. %.4f over %d pairs\n", exp(m), exp(m - h), exp(m + h), n
  }'
}
main
