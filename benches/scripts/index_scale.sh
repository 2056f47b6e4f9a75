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
# wrk on CLIENT_CPU (default 1) POSTs the IAB corpus (benches/scripts/bid.lua).
# Each round runs nginx (one worker, `return 200`, same core) and then every
# count's server, all started beforehand; the table gives medians: adshard
# req/s, bids per request (impressions bid, from /metrics), nginx req/s, and
# of each round's ratios adshard / nginx and adshard / adshard at the first count.
# Beside each req/s: how busy the server's core was during the run (from
# /proc/stat) and its CPU time per request. nginx below 100% busy means wrk,
# not nginx, set nginx's rate: the ratio is then against the client's ceiling,
# and the us/req columns compare the two servers' cost per request.
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

run() { # port -> req/s; the server core's busy share during the run -> $TMP/busy
  local j0
  j0=$(core_jiffies "$SERVER_CPU")
  taskset -c "$CLIENT_CPU" wrk -t1 "-c$CONNS" "-d${DURATION}s" -s benches/scripts/bid.lua \
    "http://127.0.0.1:$1/openrtb2/bid" >"$TMP/wrk.out"
  busy_share "$j0" "$(core_jiffies "$SERVER_CPU")" >"$TMP/busy"
  grep -q "Non-2xx" "$TMP/wrk.out" && { echo "non-2xx responses on port $1:" >&2; cat "$TMP/wrk.out" >&2; exit 1; }
  awk '/Requests\/sec/ {print $2}' "$TMP/wrk.out"
}
metric() { # port name-prefix -> sum over its samples
  curl -sf "http://127.0.0.1:$1/metrics" | awk -v p="$2" 'index($0, p) == 1 {s += $NF} END {print s + 0}'
}

# Every count's server runs from the start (each on its own port, all on
# SERVER_CPU; an idle one parks), so that each round measures nginx and every
# count back to back: this VM's speed moves 15-50% within minutes, and counts
# measured one after another compared phases, not index sizes. The ratios are
# medians of each round's own ratios.
pids=(); ports=()
for i in "${!COUNTS[@]}"; do
  n=${COUNTS[$i]}; port=$((A_PORT + 2 * i))
  [ "$port" != "$N_PORT" ] || port=$((port + 1))
  env=()
  if [ "$n" != 10 ]; then
    "$BIN" gen-campaigns --count "$n" >"$TMP/campaigns-$n.json"
    env+=("ADSHARD__CAMPAIGNS__PATH=$TMP/campaigns-$n.json")
  fi
  t0=$(date +%s%N)
  env "${env[@]}" ADSHARD__SCORING__ENABLED="$SCORING" ADSHARD__OVERLOAD__ENABLED=false ADSHARD_LOG=warn \
    ADSHARD__EVENTS__SPOOL_DIR="$TMP/spool-$n" \
    taskset -c "$SERVER_CPU" "$BIN" serve --listen "127.0.0.1:$port" --cores "$SERVER_CPU" &
  pids+=($!); ports+=("$port"); APID="${pids[*]}"
  wait_ok "http://127.0.0.1:$port/healthz" 60
  echo "$n campaigns: serving after $(( ($(date +%s%N) - t0) / 1000000 )) ms, RSS $(awk '/VmRSS/ {print $2 " " $3}' "/proc/${pids[$i]}/status")" >&2
  DURATION=2 run "$port" >/dev/null
done
DURATION=2 run "$N_PORT" >/dev/null

declare -A as busy req0 bid0
ns=(); nbusy=(); firsts=()
for i in "${!COUNTS[@]}"; do
  req0[$i]=$(metric "${ports[$i]}" 'adshard_http_requests_total{shard="0",route="bid"')
  bid0[$i]=$(metric "${ports[$i]}" 'adshard_events_total{shard="0",kind="bid"')
done
for r in $(seq "$ROUNDS"); do
  g=$(run "$N_PORT"); b=$(cat "$TMP/busy"); echo "  round $r nginx $g req/s, core busy $b" >&2
  ns+=("$g"); nbusy+=("$b")
  order=("${!COUNTS[@]}")
  # Odd rounds go up the counts, even rounds down (ABBA), so that no count
  # always runs right after nginx or last in a round.
  [ $((r % 2)) = 1 ] || order=($(printf '%s\n' "${order[@]}" | sort -rn))
  for i in "${order[@]}"; do
    v=$(run "${ports[$i]}"); b=$(cat "$TMP/busy"); echo "  round $r ${COUNTS[$i]} $v req/s, core busy $b" >&2
    as[$i]="${as[$i]:-} $v"; busy[$i]="${busy[$i]:-} $b"
    [ "$i" != 0 ] || firsts+=("$v")
  done
done

pair() { # a-list b-list -> median of a[k]/b[k]
  local -a a=($1) b=($2) q=()
  for k in "${!a[@]}"; do q+=("$(awk -v x="${a[$k]}" -v y="${b[$k]}" 'BEGIN {print x / y}')"); done
  median "${q[@]}"
}
rows=()
mn=$(median "${ns[@]}")
# Core us per request: 1e6 x the median of each run's busy share / req/s.
nb=$(median "${nbusy[@]}"); nu=$(pair "${nbusy[*]}" "${ns[*]}")
for i in "${!COUNTS[@]}"; do
  req1=$(metric "${ports[$i]}" 'adshard_http_requests_total{shard="0",route="bid"')
  bid1=$(metric "${ports[$i]}" 'adshard_events_total{shard="0",kind="bid"')
  ma=$(median ${as[$i]})
  rg=$(pair "${as[$i]}" "${ns[*]}"); rf=$(pair "${as[$i]}" "${firsts[*]}")
  ab=$(median ${busy[$i]}); au=$(pair "${busy[$i]}" "${as[$i]}")
  rows+=("$(awk -v n="${COUNTS[$i]}" -v a="$ma" -v g="$mn" -v rg="$rg" -v rf="$rf" -v r="$((req1 - req0[$i]))" -v b="$((bid1 - bid0[$i]))" \
    -v ab="$ab" -v au="$au" -v nb="$nb" -v nu="$nu" \
    'BEGIN {printf "| %s | %.1fk | %.2f | %.0f%% | %.1f | %.1fk | %.0f%% | %.1f | %.3f | %.3f |", n, a/1000, r ? b/r : 0, ab*100, au*1e6, g/1000, nb*100, nu*1e6, rg, rf}')")
done
echo "scoring=$SCORING conns=$CONNS duration=${DURATION}s rounds=$ROUNDS server_cpu=$SERVER_CPU client_cpu=$CLIENT_CPU"
echo "| campaigns | adshard req/s | bids/req | core busy | core us/req | nginx req/s | nginx core busy | nginx core us/req | ratio | vs ${COUNTS[0]} |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
