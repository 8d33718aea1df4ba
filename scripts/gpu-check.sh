#!/usr/bin/env bash
# The GPU tier: builds with the pinned pip nvcc (scripts/nvcc-venv.sh) and the
# `cuda` feature, runs tests/gpu_kernels.rs (every CUDA kernel family against
# the CPU backend, and 20 training steps on both backends with matching
# losses), then the kernel benchmarks when benches/ exists (there are none
# yet), and prints a pass/skip/fail table. Where `nvidia-smi -L` lists a GPU
# the tests run with DICCAE_REQUIRE_GPU=1, so a GPU that cannot be opened
# fails them; elsewhere every test prints why it skipped. The script fails
# when a test fails.
#   scripts/gpu-check.sh [VENV_DIR]   (default: .venv-nvcc)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-nvcc}
scripts/nvcc-venv.sh "$venv" > /dev/null
export VIRTUAL_ENV="$PWD/$venv"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    export DICCAE_REQUIRE_GPU=1
fi
set +e
cargo test --features cuda --test gpu_kernels -- --nocapture --test-threads=1 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
echo
echo "| test | result | note |"
echo "|---|---|---|"
awk '
    function flush() { if (name != "") printf "| %s | %s | %s |\n", name, result, note; name = "" }
    /^test [A-Za-z0-9_:]+ \.\.\. / { flush(); name = $2; result = "?"; note = "" }
    name != "" && /skipped: / { sub(/.*skipped: /, ""); note = $0; result = "skip" }
    name != "" && /(^|\.\.\. |[^A-Za-z])ok$/ { if (result != "skip") result = "pass"; flush() }
    name != "" && /FAILED$/ { result = "FAIL"; flush() }
    END { flush() }
' "$log"
echo
if compgen -G "benches/*.rs" > /dev/null; then
    echo "kernel benchmarks (benches/):"
    cargo bench --features cuda || status=1
else
    echo "kernel benchmarks: none (this checkout has no benches/ directory)"
fi
exit "$status"
