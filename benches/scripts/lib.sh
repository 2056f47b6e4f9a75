# Shared by the benchmark scripts (sourced from the repository root).

# apt_install, ensure_ort (deploy/dev.sh's and deploy/pgo.sh's as well).
. deploy/lib.sh

# need COMMAND PACKAGE: install the Debian package when the command is missing.
need() {
  command -v "$1" >/dev/null 2>&1 && return
  echo "installing $2" >&2
  apt_install "$2"
}

# The IAB examples the benchmarks send carry no device and few IPs: the IVT
# device check is off, and the rate checks count every request (the table is
# exercised) against a limit no run reaches. The bot and IP-range checks run.
export ADSHARD__IVT__REQUIRE_DEVICE=false
export ADSHARD__IVT__MAX_PER_IP=${IVT_MAX_PER_IP:-4000000000}
export ADSHARD__IVT__MAX_PER_DEVICE=${IVT_MAX_PER_DEVICE:-4000000000}

# Servers spool into a fresh directory of their own (removed by
# bench_cleanup), not the repository's ./spool: a node without a database
# keeps every segment and reads them all back at start-up, so segments left
# by earlier runs slowed each later start (18.9 s with 5.5 GB, 2026-11-30).
BENCH_SPOOL=""
if [ -z "${ADSHARD__EVENTS__SPOOL_DIR:-}" ]; then
  BENCH_SPOOL=$(mktemp -d)
  export ADSHARD__EVENTS__SPOOL_DIR=$BENCH_SPOOL
fi

# Builds the release binary (BIN) and points CTR scoring at the libonnxruntime
# deploy/dev.sh extracted; without one, benchmarks run with rule-based pricing
# and say so.
build_server() {
  # BIN=/path/to/adshard compares another build (an A/B run) without building.
  if [ -z "${BIN:-}" ]; then
    cargo build --release --quiet
    BIN=target/release/adshard
  fi
  if [ -z "${ORT_DYLIB_PATH:-}" ]; then
    ORT_DYLIB_PATH=$(ls "$PWD"/target/ort/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -1 || true)
    export ORT_DYLIB_PATH
  fi
  if [ -z "$ORT_DYLIB_PATH" ]; then
    echo "note: no libonnxruntime (run deploy/dev.sh test once); scoring disabled for this run" >&2
    export ADSHARD__SCORING__ENABLED=false
  fi
}

# wait_ok URL [SECONDS]: until it answers 2xx (10 s at most unless told);
# fails the script otherwise.
wait_ok() {
  for _ in $(seq $((${2:-10} * 20))); do curl -sf "$1" >/dev/null && return 0; sleep 0.05; done
  echo "no answer from $1" >&2
  exit 1
}

# With TMP set: the cleanup trap for a benchmark that runs adshard (APID: its
# pid, or several separated by spaces) beside nginx (TMP/nginx.pid), and
# removes TMP and the spool made above.
bench_cleanup() {
  # shellcheck disable=SC2086
  [ -n "${APID:-}" ] && kill $APID 2>/dev/null || true
  [ -f "$TMP/nginx.pid" ] && kill "$(cat "$TMP/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$TMP" ${BENCH_SPOOL:+"$BENCH_SPOOL"}
}

# start_nginx PORT PATH CPU: one nginx worker (config, pid and log in TMP)
# pinned to CPU, answering PATH with the 11-byte body adshard's /healthz sends;
# with NGINX_BODY=N, a JSON body of N bytes instead (a bid answer's size, for
# a floor that moves as many bytes as the bids do: the 2.5 simple banner's
# answer is about 1,300).
start_nginx() {
  # nginx affinity is a bit string, rightmost bit = CPU 0.
  local affinity body='{"ok":true}'
  affinity=1$(printf '%*s' "$3" '' | tr ' ' 0)
  if [ -n "${NGINX_BODY:-}" ]; then
    body="{\"pad\":\"$(printf '%*s' $((NGINX_BODY - 10)) '' | tr ' ' x)\"}"
  fi
  cat >"$TMP/nginx.conf" <<NGX
worker_processes 1;
worker_cpu_affinity $affinity;
daemon on;
pid $TMP/nginx.pid;
error_log $TMP/nginx.err warn;
user root;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 120s;
  server {
    listen 127.0.0.1:$1 reuseport backlog=1024;
    location $2 { default_type application/json; return 200 '$body'; }
  }
}
NGX
  taskset -c "$3" nginx -c "$TMP/nginx.conf" -e "$TMP/nginx.err"
}

# core_jiffies CPU: that core's busy and total jiffies since boot (busy:
# user, nice, system, irq, softirq, steal; io_uring waits count as iowait,
# which is idle here). It counts whatever ran on the core, not one process:
# keep the machine otherwise quiet.
core_jiffies() {
  awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat
}

# busy_share "BUSY TOTAL" "BUSY TOTAL": the core's busy share between two
# core_jiffies readings.
busy_share() {
  awk -v a="$1" -v b="$2" 'BEGIN {split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; print (t > 0 ? (y[1] - x[1]) / t : 0)}'
}

# median N...: the median of the numbers given.
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
