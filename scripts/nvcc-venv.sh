#!/usr/bin/env bash
# Creates (or reuses) a virtual environment with the pinned pip CUDA toolkit
# the kernels are built with (nvcc, ptxas, cicc and headers of CUDA 13.0; no
# GPU or driver needed), and prints the path of its nvcc on the last line.
#   scripts/nvcc-venv.sh [DIR]        (default: .venv-nvcc, gitignored)
# build.rs and scripts/kernel-report.sh find that nvcc with VIRTUAL_ENV=DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.venv-nvcc}
pins=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-nvvm==13.0.88)
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
