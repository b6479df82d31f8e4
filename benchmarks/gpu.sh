#!/usr/bin/env bash
# One short run on a machine with a CUDA GPU where torch, CuPy, pytest and hypothesis are installed:
# the GPU tests (torch-cuda and CuPy backends), the check, then the CUDA benchmark. Nothing is
# downloaded: array-api-compat and array-api-strict come from .whl/ when they are missing (make it
# with benchmarks/fetch-gpu-wheels.sh where pip reaches PyPI), xpconv itself runs from src/.
# Results go to ${OUT:-benchmarks/results}.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
if ! python -c "import array_api_compat, array_api_strict" 2>/dev/null; then
    python -m pip install --quiet --no-index --no-deps --no-compile --target /tmp/xpconv-site .whl/*.whl
    export PYTHONPATH="/tmp/xpconv-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu-device.txt"
XPCONV_TEST_BACKENDS=torch-cuda,cupy python -m pytest -m gpu -q -p no:cacheprovider 2>&1 | tee "$out/gpu-tests.txt"
python -m xpconv check 2>&1 | tee "$out/gpu-check.txt"
python -m xpconv bench --device cuda --repeats 11 --out "$out" 2>&1 | tail -40
