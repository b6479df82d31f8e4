#!/usr/bin/env bash
# Where pip reaches PyPI: the pure-Python wheels that the GPU machine lacks (it has torch, CuPy, JAX,
# pytest and hypothesis, and reaches no registry), into .whl/ (git-ignored) for benchmarks/gpu.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download --quiet --no-deps --only-binary=:all: -d .whl "array-api-compat==1.16.0" "array-api-strict==2.6.1"
ls .whl
