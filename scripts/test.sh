#!/usr/bin/env bash
# Runs coord's whole test suite: formatting and lints, the Rust unit and system tests, libcoord's
# C programs under valgrind, the `coord` Python module's suite (from its wheel, in a fresh
# virtualenv), and the Python suite that drives coord with kazoo, zkCli.sh and the C client
# (cli_mt).
# Installs what it needs first (Debian's zookeeper packages, kazoo and pytest from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

need_apt=()
[ -x /usr/share/zookeeper/bin/zkCli.sh ] || need_apt+=(zookeeper)
[ -x /usr/lib/zookeeper/bin/cli_mt ] || need_apt+=(zookeeper-bin)
command -v java >/dev/null 2>&1 || need_apt+=(default-jre-headless)
command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc g++)
if [ ${#need_apt[@]} -gt 0 ]; then
    step "installing Debian packages: ${need_apt[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
if ! python3 -c 'import kazoo, pytest' >/dev/null 2>&1; then
    step "installing Python test requirements"
    python3 -m pip install -q -r tests/python/requirements.txt
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "a TCP-only build (without the quic feature) still compiles, warning-free"
cargo clippy -p coord --no-default-features -- -D warnings

step "building coord"
cargo build --workspace --all-targets
export COORD_BIN="$PWD/target/debug/coord"

step "Rust unit and system tests"
cargo test --workspace

step "C: libcoord's example and test program, built with pkg-config, under valgrind"
scripts/test-c.sh

step "Rust client from a new crate (a path dependency), against a coord server"
scripts/test-new-crate.sh

step "Rust system tests against a 3-member ensemble (clients on a follower)"
TARGET=ensemble cargo test -p coord-system-tests

step "Python module: the abi3 wheel built by pip, installed in a fresh virtualenv, its suite"
scripts/test-python-module.sh

step "Python system tests (kazoo, zkCli.sh, cli_mt)"
python3 -m pytest -q tests/python

step "Python system tests against a 3-member ensemble (each test on another member)"
TARGET=ensemble python3 -m pytest -q tests/python
