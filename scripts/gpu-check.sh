#!/usr/bin/env bash
# The GPU tier, for a machine with an NVIDIA GPU and driver (under 10 minutes
# on one GPU):
#   1. the pinned pip toolkit with cuBLAS and compute-sanitizer
#      (scripts/nvcc-venv.sh --runtime), on LD_LIBRARY_PATH;
#   2. tests/gpu_kernels.rs with the `cuda` feature: every CUDA kernel family
#      against the CPU backend, and 20 training steps on both backends with
#      matching losses;
#   3. a short `train --device cuda` (tiny model, 2 epochs) through the binary;
#   4. compute-sanitizer memcheck and racecheck over the kernel tests at their
#      small shapes.
# Where `nvidia-smi -L` lists a GPU (or DICCAE_REQUIRE_GPU=1 is set) a backend
# that cannot open is a failure, never a skip. On a machine without a GPU the
# script says so and exits 0 having run nothing: its table says "skip".
# No CPU benchmark runs here.
#   scripts/gpu-check.sh [VENV_DIR]   (default: .venv-nvcc)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-nvcc}
if nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    export DICCAE_REQUIRE_GPU=1
fi
if [ "${DICCAE_REQUIRE_GPU:-0}" != 1 ]; then
    echo "| step | result | note |"
    echo "|---|---|---|"
    echo "| gpu-check | skip | nvidia-smi lists no GPU and DICCAE_REQUIRE_GPU is not 1 |"
    exit 0
fi
scripts/nvcc-venv.sh --runtime "$venv" > /dev/null
export VIRTUAL_ENV="$PWD/$venv"
lib=$(scripts/nvcc-venv.sh --lib-path "$venv")
export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
sanitizer=$(ls "$venv"/lib/python3*/site-packages/nvidia/cu13/bin/compute-sanitizer 2>/dev/null | head -n 1)
results=()
record() { results+=("| $1 | $2 | $3 |"); }
status=0

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if cargo test --features cuda --test gpu_kernels -- --test-threads=1 > "$log" 2>&1; then
    record "gpu_kernels" pass "$(grep -o '[0-9]* passed' "$log" | tail -n 1)"
else
    tail -n 40 "$log"
    record "gpu_kernels" FAIL "see the output above"
    status=1
fi

run_dir=$(mktemp -d)
if cargo run --quiet --features cuda -- train --device cuda --overwrite --out "$run_dir" \
    --set model.dim=32 --set model.heads=2 --set train.epochs=2 --set train.batch_size=32 \
    --set data.synthetic_train_per_class=16 --set data.synthetic_test_per_class=8 > "$log" 2>&1 \
    && grep -q '"kind":"summary"' "$run_dir/metrics.jsonl"; then
    record "train --device cuda" pass "2 epochs, summary written"
else
    tail -n 20 "$log"
    record "train --device cuda" FAIL "see the output above"
    status=1
fi
rm -rf "$run_dir"

test_bin=$(cargo test --features cuda --test gpu_kernels --no-run 2>&1 \
    | grep -o 'target/[^ )]*gpu_kernels-[0-9a-f]*' | tail -n 1)
if [ -z "$sanitizer" ] || [ -z "$test_bin" ]; then
    record "compute-sanitizer" FAIL "no compute-sanitizer ($sanitizer) or test binary ($test_bin)"
    status=1
else
    # The kernel tests at their small shapes; the 20-step training test is
    # left to step 2 (under the sanitizer it would take most of the budget).
    for tool in memcheck racecheck; do
        if "$sanitizer" --tool "$tool" --error-exitcode 99 "$test_bin" --test-threads=1 \
            --skip twenty_training_steps > "$log" 2>&1; then
            record "compute-sanitizer $tool" pass "$(grep -o 'ERROR SUMMARY: [0-9]* errors' "$log" | tail -n 1)"
        else
            tail -n 40 "$log"
            record "compute-sanitizer $tool" FAIL "see the output above"
            status=1
        fi
    done
fi

echo
echo "| step | result | note |"
echo "|---|---|---|"
printf '%s\n' "${results[@]}"
exit "$status"
