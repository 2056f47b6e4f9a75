#!/usr/bin/env bash
# A profile-guided (PGO) release build of adshard: the production binary.
#
#   deploy/pgo.sh                 # -> target/pgo/adshard (and the profile it used)
#   OUT=/usr/local/bin deploy/pgo.sh
#
# 1. An instrumented release build (-Cprofile-generate) in target/pgo-gen.
# 2. Training: that binary serves, one shard, while wrk POSTs the request
#    corpus of tests/fixtures/corpus (22 OpenRTB 2.5/2.6 requests: banner,
#    video, audio, native, deals, supply chains, lenient values), not the IAB
#    examples the benchmarks send (benches/scripts/bid.lua's default list),
#    so a benchmark of the result is not measured on its own training set.
#    Two campaign sets: the built-in ten, then 20,000 synthetic ones
#    (`adshard gen-campaigns`); publisher ad calls, beacons and /metrics
#    between. The server is stopped with SIGTERM, which writes the profile.
# 3. llvm-profdata (the version of rustc's LLVM; Debian llvm-N, installed
#    when missing) merges the profile; the release build is made again
#    with -Cprofile-use in target/pgo-use and copied to target/pgo/adshard.
#
# Both builds use --target, so RUSTFLAGS reach our code and its dependencies
# but not build scripts or proc macros. Takes two release builds plus about
# 40 s of training. Needs wrk and curl (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/scripts/lib.sh
need wrk wrk
need curl curl
source <(sed -n '/^apt_install()/,/^}/p;/^ORT_VERSION=/p;/^ensure_ort()/,/^}/p' deploy/dev.sh)
ensure_ort

TRIPLE=$(rustc -vV | awk '/^host:/ {print $2}')
LLVM_MAJOR=$(rustc -vV | awk '/^LLVM version:/ {split($3, v, "."); print v[1]}')
PROFDATA=""
for c in "llvm-profdata-$LLVM_MAJOR" "/usr/lib/llvm-$LLVM_MAJOR/bin/llvm-profdata"; do
  command -v "$c" >/dev/null 2>&1 && { PROFDATA=$c; break; }
done
if [ -z "$PROFDATA" ]; then
  echo "installing llvm-$LLVM_MAJOR (llvm-profdata for rustc's LLVM $LLVM_MAJOR)" >&2
  apt_install "llvm-$LLVM_MAJOR"
  PROFDATA="llvm-profdata-$LLVM_MAJOR"
fi

RAW=$PWD/target/pgo/raw
rm -rf "$RAW"
mkdir -p "$RAW" target/pgo
echo "pgo: instrumented build" >&2
RUSTFLAGS="-Cprofile-generate=$RAW" cargo build --release --locked --quiet \
  --target "$TRIPLE" --target-dir target/pgo-gen
GEN=target/pgo-gen/$TRIPLE/release/adshard

TMP=$(mktemp -d)
trap 'kill "${APID:-}" 2>/dev/null || true; rm -rf "$TMP" ${BENCH_SPOOL:+"$BENCH_SPOOL"}' EXIT
PORT=${PORT:-18620}
NAMES=$(cd tests/fixtures/corpus && ls ./*.json | grep -v expect.json | sed 's|^\./||' | tr '\n' ' ')
"$GEN" gen-campaigns --count 20000 >"$TMP/campaigns.json"

train() { # extra env for the server
  env "$@" LLVM_PROFILE_FILE="$RAW/adshard-%p-%m.profraw" ADSHARD__OVERLOAD__ENABLED=false ADSHARD_LOG=warn \
    "$GEN" serve --listen "127.0.0.1:$PORT" --cores 0 &
  APID=$!
  wait_ok "http://127.0.0.1:$PORT/healthz" 120
  FIXTURES=tests/fixtures/corpus NAMES="$NAMES" wrk -t1 -c32 -d15s -s benches/scripts/bid.lua \
    "http://127.0.0.1:$PORT/openrtb2/bid" | grep -E "Requests/sec|bodies" >&2
  for i in $(seq 300); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/ad?w=300&h=250&site=pgo.example&uid=u$i" || true
    curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" || true
  done
  curl -s -o /dev/null "http://127.0.0.1:$PORT/metrics"
  kill -TERM "$APID"
  wait "$APID" || true
  APID=""
}
echo "pgo: training, built-in campaigns" >&2
train
echo "pgo: training, 20,000 synthetic campaigns" >&2
train "ADSHARD__CAMPAIGNS__PATH=$TMP/campaigns.json"

ls "$RAW"/*.profraw >/dev/null 2>&1 || { echo "pgo: the training wrote no profile" >&2; exit 1; }
"$PROFDATA" merge -o target/pgo/adshard.profdata "$RAW"
echo "pgo: optimised build" >&2
RUSTFLAGS="-Cprofile-use=$PWD/target/pgo/adshard.profdata" cargo build --release --locked --quiet \
  --target "$TRIPLE" --target-dir target/pgo-use
cp "target/pgo-use/$TRIPLE/release/adshard" target/pgo/adshard
[ -n "${OUT:-}" ] && cp target/pgo/adshard "$OUT/"
echo "pgo: target/pgo/adshard" >&2
