#!/usr/bin/env bash
# The two commands of the README quickstart.
#
#   deploy/dev.sh run [serve args...]   install what is missing, build, run the
#                                       server on the embedded default config
#   deploy/dev.sh test                  install what is missing, then fmt, clippy
#                                       and the whole test suite (what CI runs),
#                                       Cassandra tests included (Java 17, Maven)
set -euo pipefail
cd "$(dirname "$0")/.."

. deploy/lib.sh

ensure_deps() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo (Rust >= 1.88) is required; install it with rustup (https://rustup.rs)" >&2
    exit 1
  fi
  # capnpc needs the Cap'n Proto compiler (build.rs compiles schema/*.capnp).
  command -v capnp >/dev/null 2>&1 || { echo "installing capnproto" >&2; apt_install capnproto; }
  ensure_ort
  if [ "${1:-}" = test ]; then
    rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy >/dev/null 2>&1 || true
    # tests/cassandra.rs runs Apache Cassandra 5.0 (Java 17) fetched from
    # Maven Central into target/cassandra by deploy/cassandra/cassandra.sh.
    command -v java >/dev/null 2>&1 || { echo "installing Java 17" >&2; apt_install openjdk-17-jre-headless; }
    command -v mvn >/dev/null 2>&1 || { echo "installing Maven" >&2; apt_install maven; }
    deploy/cassandra/cassandra.sh fetch
  fi
}

case "${1:-}" in
  run)
    shift
    ensure_deps run
    cargo build --release
    exec target/release/adshard serve "$@"
    ;;
  test)
    ensure_deps test
    cargo fmt --all -- --check
    cargo clippy --all-targets --quiet -- -D warnings
    cargo test --all-targets
    ;;
  *)
    echo "usage: deploy/dev.sh run [serve args...] | deploy/dev.sh test" >&2
    exit 2
    ;;
esac
