"""Command line: ``python -m xpconv demo``, ``check``, ``bench`` and ``calibrate``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xpconv", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser(
        "check",
        help="compare forward and gradients with torch autograd (or finite differences) on every installed backend, "
        "then the release gate's drawn cases",
    )
    check.add_argument(
        "--cases",
        type=int,
        default=200,
        help="cases the release gate draws over every kind of call (default 200; the release runs 10000)",
    )
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--batch", type=int, default=8, help="batch size of the tutorial's example (it used 256)")
    commands.add_parser("bench", help="time xpconv against torch's conv2d (see bench --help)", add_help=False)
    commands.add_parser(
        "calibrate", help='refit "auto"\'s cost model on this machine (see calibrate --help)', add_help=False
    )
    commands.add_parser("demo", help="train a small CNN on 8x8 digits with xpconv (see demo --help)", add_help=False)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        from .bench import main as bench

        return bench(argv[1:])
    if argv[:1] == ["calibrate"]:
        from .calibrate import main as calibrate

        return calibrate(argv[1:])
    if argv[:1] == ["demo"]:
        from .demo import main as demo

        return demo(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "check":
        from .check import run_check
        from .gate import run_gate

        failures = run_check(seed=args.seed, batch=args.batch)
        print()
        failures += run_gate(args.cases, args.seed)
        print("check passed" if failures == 0 else f"check FAILED: {failures} mismatching cases")
        return 0 if failures == 0 else 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
