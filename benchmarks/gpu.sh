#!/usr/bin/env bash
# One short run for a machine with a CUDA GPU where CuPy and torch are already installed:
# the GPU tests (torch-cuda and CuPy backends), the check, then the CUDA benchmark.
# Results go to ${OUT:-benchmarks/results}. Not yet run: no GPU was at hand when it was written.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
python -m pip install --quiet --no-deps -e .
python -m pip install --quiet array-api-compat pytest hypothesis array-api-strict
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu-device.txt"
XPCONV_TEST_BACKENDS=torch-cuda,cupy python -m pytest -m gpu -q -p no:cacheprovider 2>&1 | tee "$out/gpu-tests.txt"
python -m xpconv check 2>&1 | tee "$out/gpu-check.txt"
python -m xpconv bench --device cuda --repeats 11 --out "$out" 2>&1 | tail -40
