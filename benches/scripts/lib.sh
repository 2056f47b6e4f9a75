# Shared by the benchmark scripts (sourced from the repository root).

# need COMMAND PACKAGE: install the Debian package when the command is missing.
need() {
  command -v "$1" >/dev/null 2>&1 && return
  echo "installing $2" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

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
