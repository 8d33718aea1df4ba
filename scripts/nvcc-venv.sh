#!/usr/bin/env bash
# Creates (or reuses) a virtual environment with the pinned pip CUDA toolkit
# the kernels are built with (nvcc, ptxas, cicc and headers of CUDA 13.0; no
# GPU or driver needed), and prints the path of its nvcc on the last line.
# With --runtime it also installs what running on a GPU needs beyond the
# driver: cuBLAS 13.0 (libcublas.so.13, which cudarc loads) and
# compute-sanitizer; `scripts/nvcc-venv.sh --lib-path DIR` then prints the
# library directory to put on LD_LIBRARY_PATH.
#   scripts/nvcc-venv.sh [--runtime] [DIR]     (default DIR: .venv-nvcc, gitignored)
#   scripts/nvcc-venv.sh --lib-path [DIR]
# build.rs and scripts/kernel-report.sh find that nvcc with VIRTUAL_ENV=DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
runtime=0
if [ "${1:-}" = "--lib-path" ]; then
    dir=${2:-.venv-nvcc}
    for lib in "$dir"/lib/python3*/site-packages/nvidia/cu13/lib; do
        [ -d "$lib" ] && { echo "$(cd "$lib" && pwd)"; exit 0; }
    done
    echo "nvcc-venv: no nvidia/cu13/lib in $dir; run scripts/nvcc-venv.sh --runtime $dir" >&2
    exit 1
fi
if [ "${1:-}" = "--runtime" ]; then
    runtime=1
    shift
fi
dir=${1:-.venv-nvcc}
pins=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-nvvm==13.0.88)
if [ "$runtime" = 1 ]; then
    pins+=(nvidia-cublas==13.0.2.14 nvidia-cuda-sanitizer-api==13.0.85)
fi
[ -x "$dir/bin/python" ] || python3 -m venv "$dir"
"$dir/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}" >&2
for nvcc in "$dir"/lib/python3*/site-packages/nvidia/cu13/bin/nvcc "$dir"/lib/python3*/site-packages/nvidia/cuda_nvcc/bin/nvcc; do
    if [ -x "$nvcc" ] && "$nvcc" --version > /dev/null; then
        echo "$nvcc"
        exit 0
    fi
done
echo "nvcc-venv: no working nvcc in $dir after installing ${pins[*]}" >&2
exit 1
