#!/usr/bin/env bash
# Long runs of the Zab simulator: many seeds with random faults (the suite runs a few dozen).
#   scripts/soak.sh [seeds]          default 10000
# A failure prints its seed and a one-line replay: COORD_SEED=<n> cargo test -p coord-engine --test sim
# (COORD_SIM_TRACE=1 prints every event of the replay).
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${1:-10000}"
COORD_SIM_SEEDS="$seeds" cargo test --release -p coord-engine --test sim random_faults -- --nocapture
