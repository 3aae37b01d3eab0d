#!/usr/bin/env bash
# Runs coord's fuzz targets (tests/fuzz, cargo-fuzz + libFuzzer) one after another, each for a
# bounded time. Not part of CI or scripts/test.sh.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]      (default: 60 s, every target)
#
# First it regenerates the seed corpus (real encodings from coord's own encoders and engine)
# and replays every regression input under tests/fuzz/fixtures/<target>/; then it fuzzes. A
# crash leaves its input in tests/fuzz/artifacts/<target>/; minimise it with
# `cargo fuzz tmin <target> <file>` and copy it into tests/fuzz/fixtures/<target>/.
#
# Only the stable toolchain is needed: RUSTC_BOOTSTRAP=1 lets cargo-fuzz use its nightly flags.
# Runs one fuzzer at a time on one core. Extra libFuzzer flags: FUZZ_ARGS="-max_len=8192".
set -euo pipefail
cd "$(dirname "$0")/../tests/fuzz"

seconds="${1:-60}"
shift || true
all_targets=(proto_request znode_txn znode_snapshot engine_log)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${all_targets[@]}"); fi

step() { printf '\n==> %s\n' "$*"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
    step "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

step "generating seed corpora"
cargo run --quiet --bin gen-seeds -- corpus

step "building fuzz targets"
cargo fuzz build

lib_args=(-timeout=10 -malloc_limit_mb=256 -rss_limit_mb=2048)
failed=()
for target in "${targets[@]}"; do
    mkdir -p "fixtures/$target" "corpus/$target"
    step "$target: replaying fixtures/$target"
    # -runs=0 runs every input once and exits.
    if ! cargo fuzz run "$target" "fixtures/$target" -- -runs=0 "${lib_args[@]}"; then
        failed+=("$target (fixture replay)")
        continue
    fi
    step "$target: fuzzing for ${seconds}s"
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    if ! cargo fuzz run "$target" -- -max_total_time="$seconds" -print_final_stats=1 \
        "${lib_args[@]}" ${FUZZ_ARGS:-}; then
        failed+=("$target")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    step "FAILED: ${failed[*]} (inputs in tests/fuzz/artifacts/)"
    exit 1
fi
step "all targets ran ${seconds}s without a crash"
