"""``python -m xpconv calibrate``: refit ``"auto"``'s cost model on this machine (:func:`xpconv.calibrate`)."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

import numpy as np

import xpconv

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xpconv calibrate", description=xpconv.calibrate.__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--library", choices=("numpy", "torch", "cupy", "jax"), default="numpy")
    parser.add_argument("--device", default=None, help="the device to fit for (torch: cpu, cuda, cuda:1, ...)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds per pass (default 5)")
    parser.add_argument("--no-save", action="store_true", help="print the fit, leave the wisdom file alone")
    args = parser.parse_args(argv)
    like: Any
    if args.library == "torch":
        import torch

        like = torch.empty(0, device=args.device or "cpu")
    elif args.library == "cupy":
        import cupy

        like = cupy.empty(0, dtype=cupy.float32)
    elif args.library == "jax":
        import jax.numpy as jnp

        like = jnp.empty(0)
    else:
        like = np.empty(0, dtype=np.float32)
    before = xpconv.cost_model(like)
    model = xpconv.calibrate(like, save=not args.no_save, rounds=args.rounds, echo=True)
    print(f"before: {asdict(before)}")
    print(f"after:  {asdict(model)}" + ("" if args.no_save else " (saved)"))
    return 0
