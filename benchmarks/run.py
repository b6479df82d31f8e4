"""Benchmark xpconv against torch's own conv2d: ``python benchmarks/run.py [--device cuda] [--layers ...]``.

The same as ``python -m xpconv bench``; results go to ``benchmarks/results/{cpu,cuda}.{md,json}``.
"""

import sys

from xpconv.tools.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
