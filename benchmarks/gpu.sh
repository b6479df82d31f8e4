#!/usr/bin/env bash
# One short run on a machine with a CUDA GPU where torch, CuPy, pytest and hypothesis are installed:
# the whole test suite on the torch-cuda and CuPy backends (every test, not only those marked gpu;
# what needs a package the machine lacks skips with the reason), the check with its CUDA rows, then
# the CUDA benchmarks of both suites. Nothing is
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
CI=true XPCONV_TEST_BACKENDS=torch-cuda,cupy python -m pytest -q -p no:cacheprovider -ra 2>&1 | tee "$out/gpu-tests.txt"
python -m xpconv check 2>&1 | tee "$out/gpu-check.txt"
python -m xpconv bench --device cuda --repeats 11 --no-memory --out "$out" 2>&1 | tail -40
python -m xpconv bench --device cuda --suite large --repeats 7 --no-memory --out "$out" 2>&1 | tail -40
