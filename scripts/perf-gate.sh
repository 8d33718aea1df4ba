#!/usr/bin/env bash
# Performance regression gate: a quick benchmark subset, each time divided by
# a calibration loop measured in the same run, medians of repeats, compared
# with the committed bench/baseline.json; fails when a workload is more than
# 25% slower than its baseline (see bench/perf_gate.rs).
#
#   scripts/perf-gate.sh                    # compare with the baseline
#   scripts/perf-gate.sh --update-baseline  # the only way to rewrite bench/baseline.json
#   scripts/perf-gate.sh --self-test        # shows the gate fails on a deliberately slowed kernel
set -euo pipefail
cd "$(dirname "$0")/.."
# The machine kind has 2 cores; the baseline was taken with 2 threads.
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-2}"
cargo build --quiet --release --example perf_gate
exec "${CARGO_TARGET_DIR:-target}/release/examples/perf_gate" "$@"
