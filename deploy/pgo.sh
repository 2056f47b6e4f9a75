#!/usr/bin/env bash
# A profile-guided release build of adshard: the production binary.
#
#   deploy/pgo.sh                 # -> target/pgo/adshard (and the profiles it used)
#   BOLT=1 deploy/pgo.sh          # and a BOLT stage (step 4)
#   OUT=/usr/local/bin deploy/pgo.sh
#
# 1. An instrumented release build (-Cprofile-generate) in target/pgo-gen.
# 2. Training: that binary serves, one shard, while wrk POSTs the request
#    corpus of tests/fixtures/corpus (22 OpenRTB 2.5/2.6 requests: banner,
#    video, audio, native, deals, supply chains, lenient values), not the IAB
#    examples the benchmarks send (benches/scripts/bid.lua's default list),
#    so a benchmark of the result is not measured on its own training set.
#    Two campaign sets: the built-in ten, then 20,000 synthetic ones
#    (`adshard gen-campaigns`); publisher ad calls and /healthz between.
#    The server is stopped with SIGTERM, which writes the profile.
# 3. llvm-profdata (the version of rustc's LLVM; Debian llvm-N, installed
#    when missing) merges the profile; the release build is made again
#    with -Cprofile-use in target/pgo-use (linked with --emit-relocs for step 4).
# 4. With BOLT=1 (Debian bolt-N, installed when missing): llvm-bolt instruments
#    that binary, the same training runs it, and llvm-bolt lays the code out
#    by the profile (hot blocks and functions together, cold parts split
#    off; debug info is dropped, symbols stay). Off by default: on top of
#    PGO it measured 1.144x and 0.994x bids/s in two A/Bs at 100k campaigns
#    (README, Benchmarks), a gain not shown on the 2-core VM.
# The result is target/pgo/adshard.
#
# Both builds use --target, so RUSTFLAGS reach our code and its dependencies
# but not build scripts or proc macros. Takes two release builds plus 40 s
# of training (10-12 min on the 2-core VM; BOLT adds about a minute). Needs wrk and curl
# (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
# benches/scripts/lib.sh sources deploy/lib.sh (apt_install, ensure_ort).
. benches/scripts/lib.sh
need wrk wrk
need curl curl
ensure_ort

TRIPLE=$(rustc -vV | awk '/^host:/ {print $2}')
LLVM_MAJOR=$(rustc -vV | awk '/^LLVM version:/ {split($3, v, "."); print v[1]}')
# tool NAME PACKAGE: the LLVM tool of rustc's LLVM version, installed when missing.
tool() {
  local c
  for c in "$1-$LLVM_MAJOR" "/usr/lib/llvm-$LLVM_MAJOR/bin/$1"; do
    command -v "$c" >/dev/null 2>&1 && { echo "$c"; return; }
  done
  echo "installing $2-$LLVM_MAJOR ($1 for rustc's LLVM $LLVM_MAJOR)" >&2
  apt_install "$2-$LLVM_MAJOR"
  echo "$1-$LLVM_MAJOR"
}
PROFDATA=$(tool llvm-profdata llvm)

# RUSTFLAGS replaces the flags of .cargo/config.toml: name its x86-64 CPU
# level again (the config sets it for x86_64 targets only).
CPU=""
case $TRIPLE in
  x86_64-*) CPU=$(grep -o -- '-Ctarget-cpu=[A-Za-z0-9_-]*' .cargo/config.toml 2>/dev/null | head -1 || true) ;;
esac

RAW=$PWD/target/pgo/raw
rm -rf "$RAW"
mkdir -p "$RAW" target/pgo
echo "pgo: instrumented build" >&2
RUSTFLAGS="$CPU -Cprofile-generate=$RAW" cargo build --release --locked --quiet \
  --target "$TRIPLE" --target-dir target/pgo-gen
GEN=target/pgo-gen/$TRIPLE/release/adshard

TMP=$(mktemp -d)
trap bench_cleanup EXIT
PORT=${PORT:-18620}
BOLT=${BOLT:-0}
# The first CPU this script may use (a build host's cpuset need not hold CPU 0).
CORE=${CORE:-$(taskset -pc $$ | awk -F': ' '{print $2}' | cut -d, -f1 | cut -d- -f1)}
NAMES=$(cd tests/fixtures/corpus && ls ./*.json | grep -v expect.json | sed 's|^\./||' | tr '\n' ' ')
"$GEN" gen-campaigns --count 20000 >"$TMP/campaigns.json"

train() { # binary, extra env for the server
  local bin=$1
  shift
  env "$@" LLVM_PROFILE_FILE="$RAW/adshard-%p-%m.profraw" ADSHARD__OVERLOAD__ENABLED=false ADSHARD_LOG=error \
    "$bin" serve --listen "127.0.0.1:$PORT" --cores "$CORE" &
  APID=$!
  wait_ok "http://127.0.0.1:$PORT/healthz" 120
  FIXTURES=tests/fixtures/corpus NAMES="$NAMES" wrk -t1 -c32 -d15s -s benches/scripts/bid.lua \
    "http://127.0.0.1:$PORT/openrtb2/bid" | grep -E "Requests/sec|bodies" >&2
  for i in $(seq 300); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/ad?w=300&h=250&site=pgo.example&uid=u$i" || true
    curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" || true
  done
  kill -TERM "$APID"
  wait "$APID" || true
  APID=""
}
train_both() { # binary
  echo "pgo: training $1, built-in campaigns" >&2
  train "$1"
  echo "pgo: training $1, 20,000 synthetic campaigns" >&2
  train "$1" "ADSHARD__CAMPAIGNS__PATH=$TMP/campaigns.json"
}
train_both "$GEN"

ls "$RAW"/*.profraw >/dev/null 2>&1 || { echo "pgo: the training wrote no profile" >&2; exit 1; }
"$PROFDATA" merge -o "$TMP/adshard.profdata" "$RAW"
# Named by its hash: cargo sees RUSTFLAGS change, not the file they name,
# so a new profile under the same name would leave the old build standing.
rm -f target/pgo/adshard-*.profdata
PROFILE=$PWD/target/pgo/adshard-$(sha256sum "$TMP/adshard.profdata" | cut -c1-16).profdata
mv "$TMP/adshard.profdata" "$PROFILE"
echo "pgo: optimised build" >&2
RELOCS=""
[ "$BOLT" = 1 ] && RELOCS=" -Clink-arg=-Wl,--emit-relocs"
RUSTFLAGS="$CPU -Cprofile-use=$PROFILE$RELOCS" \
  cargo build --release --locked --quiet --target "$TRIPLE" --target-dir target/pgo-use
USE=target/pgo-use/$TRIPLE/release/adshard

if [ "$BOLT" != 1 ]; then
  cp "$USE" target/pgo/adshard
else
  BOLT_BIN=$(tool llvm-bolt bolt)
  MERGE_FDATA=$(tool merge-fdata bolt)
  echo "pgo: BOLT instrumentation" >&2
  rm -f target/pgo/bolt.*.fdata
  "$BOLT_BIN" "$USE" -instrument -instrumentation-file="$PWD/target/pgo/bolt" \
    -instrumentation-file-append-pid -o "$TMP/adshard.inst" >"$TMP/bolt.log" 2>&1 ||
    { cat "$TMP/bolt.log" >&2; exit 1; }
  train_both "$TMP/adshard.inst"
  ls target/pgo/bolt.*.fdata >/dev/null 2>&1 || { echo "pgo: the BOLT training wrote no profile" >&2; exit 1; }
  "$MERGE_FDATA" target/pgo/bolt.*.fdata >target/pgo/adshard.fdata 2>/dev/null
  "$BOLT_BIN" "$USE" -o target/pgo/adshard -data=target/pgo/adshard.fdata \
    -reorder-blocks=ext-tsp -reorder-functions=cdsort -split-functions -split-all-cold -split-eh \
    -icf -use-gnu-stack >"$TMP/bolt.log" 2>&1 || { cat "$TMP/bolt.log" >&2; exit 1; }
  grep -E "functions in the binary .* have non-empty execution profile" "$TMP/bolt.log" >&2 || true
fi
[ -n "${OUT:-}" ] && cp target/pgo/adshard "$OUT/"
echo "pgo: target/pgo/adshard" >&2
