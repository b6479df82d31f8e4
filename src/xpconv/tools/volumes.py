"""``python -m xpconv bench --suite volumes``: one large volume, chunked in space, on a cluster of small workers.

A float32 volume of ``size^3`` voxels in chunks of ``chunk^3``, drawn lazily chunk by chunk (it is
never whole in one process), with one ``kernel^3`` filter and ``padding="same"``, on a
``dask.distributed`` LocalCluster of ``workers`` processes of ``worker_memory`` each:

- **xpconv on Dask**: the forward, then the backward (dX, dK and db of a drawn dz);
- **dask-image**: ``dask_image.ndfilters.correlate`` (scipy.ndimage per block through ``map_overlap``;
  forward only: it has no gradients), on the same chunks and cluster size;
- **xpconv on NumPy**: the same volume whole, in one process (its peak memory is that process's).

Each runs in a process of its own, with a fresh cluster. Reported: seconds, voxels per second, and
each worker's peak resident memory (``ru_maxrss``: the most the process ever held, its imports
included). Every result is reduced on the cluster (sums, and one interior block compared with
scipy.ndimage on the same voxels), so no result is gathered whole.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import xpconv

from .runner import installed

VARIANTS = ("xpconv-dask", "dask-image", "xpconv-numpy")


@dataclass(frozen=True)
class Volume:
    size: int = 384
    chunk: int = 128
    kernel: int = 9
    workers: int = 2
    worker_memory: str = "640MiB"
    workspace_mib: int = 64  # each task's temporaries (workspace_bytes): a tenth of a worker

    @property
    def voxels(self) -> int:
        return self.size**3


def _drawn(volume: Volume, seed: int) -> Any:
    import dask.array as da

    shape = (1, 1, *(volume.size,) * 3)
    chunks = (1, 1, *(volume.chunk,) * 3)
    return da.random.default_rng(seed).standard_normal(shape, chunks=chunks, dtype=np.float32)


def _kernel(volume: Volume) -> np.ndarray:
    k = np.random.default_rng(2).standard_normal((1, 1, *(volume.kernel,) * 3)).astype(np.float32)
    return k / np.abs(k).sum()


def _interior_error(x: Any, z: Any, kernel: np.ndarray, volume: Volume) -> float:
    """Largest difference, relative to the largest value, of one interior block of ``z`` from
    scipy.ndimage's correlation of the same voxels (the block and its halo computed alone)."""
    import scipy.ndimage

    half, lo = volume.kernel // 2, volume.size // 2 - volume.chunk // 4
    hi = lo + volume.chunk // 2
    around = np.asarray(x[0, 0, lo - half : hi + half, lo - half : hi + half, lo - half : hi + half].compute())
    expected = scipy.ndimage.correlate(around, kernel[0, 0], mode="constant")[half:-half, half:-half, half:-half]
    got = np.asarray(z[0, 0, lo:hi, lo:hi, lo:hi].compute())
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def _peak_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_variant(variant: str, volume: Volume) -> dict[str, Any]:
    """Time one variant in this process (a fresh cluster for the Dask ones); its record."""
    import dask

    record: dict[str, Any] = {"variant": variant, **asdict(volume)}
    kernel = _kernel(volume)
    if variant == "xpconv-numpy":
        x = np.asarray(_drawn(volume, 0).compute(scheduler="synchronous"))
        dz = np.asarray(_drawn(volume, 1).compute(scheduler="synchronous"))
        start = time.perf_counter()
        z = xpconv.conv3d(x, kernel, padding="same")
        record["forward_s"] = time.perf_counter() - start
        start = time.perf_counter()
        xpconv.conv3d_backward(dz, x, kernel, padding="same")
        record["backward_s"] = time.perf_counter() - start
        record["process_peak_mib"] = _peak_mib()
        record["checksum"] = float(z.astype(np.float64).sum())
        return record
    import dask.array as da
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=volume.workers, threads_per_worker=1, memory_limit=volume.worker_memory, dashboard_address=None
    )
    try:
        with Client(cluster) as client:
            started = set(client.run(os.getpid).values())
            x = _drawn(volume, 0)
            lazy_kernel, workspace = da.from_array(kernel), volume.workspace_mib * 2**20
            if variant == "dask-image":
                from dask_image.ndfilters import correlate  # type: ignore[import-untyped]

                z = correlate(x[0, 0], kernel[0, 0], mode="constant")[None, None]
            else:
                z = xpconv.conv3d(x, lazy_kernel, padding="same", workspace_bytes=workspace)
            start = time.perf_counter()
            record["checksum"] = float(z.sum(dtype=np.float64).compute())
            record["forward_s"] = time.perf_counter() - start
            if variant == "xpconv-dask":
                dz = _drawn(volume, 1)
                dx, dk, db = xpconv.conv3d_backward(dz, x, lazy_kernel, padding="same", workspace_bytes=workspace)
                start = time.perf_counter()
                dask.compute(dx.sum(dtype=np.float64), dk, db)
                record["backward_s"] = time.perf_counter() - start
            record["worker_peak_mib"] = sorted(client.run(_peak_mib).values())
            record["restarts"] = len(set(client.run(os.getpid).values()) - started)
            record["interior_error"] = _interior_error(x, z, kernel, volume)
    finally:
        cluster.close()
    return record


def _in_subprocess(variant: str, volume: Volume) -> dict[str, Any]:
    code = (
        "import json, sys; from xpconv.tools.volumes import Volume, run_variant; "
        f"print('RESULT', json.dumps(run_variant({variant!r}, Volume(**{asdict(volume)!r}))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {"variant": variant, **asdict(volume), "error": (done.stderr or done.stdout).strip().splitlines()[-1:]}


def markdown(records: list[dict[str, Any]], command: str) -> str:
    volume = records[0]
    lines = [
        "# A volume chunked in space",
        "",
        f"Command: `{command}`. A float32 volume of {volume['size']}^3 voxels "
        f"({volume['size'] ** 3 * 4 / 2**20:.0f} MiB) in {volume['chunk']}^3 chunks, drawn lazily; one "
        f'{volume["kernel"]}^3 filter, `padding="same"`; Dask on a LocalCluster of {volume["workers"]} workers '
        f"x {volume['worker_memory']} (1 thread each), `workspace_bytes` {volume['workspace_mib']} MiB on Dask. "
        "Peak memory: `ru_maxrss` of each worker (its imports included), or of the one process for NumPy. "
        "Backward: dX, dK and db together.",
        "",
        "| variant | forward s | forward voxels/s | backward s | backward voxels/s | peak MiB | interior error |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in records:
        if "error" in r or "skipped" in r:
            why = f"not run: {r['skipped']}" if "skipped" in r else f"failed: {' '.join(r['error'])}"
            lines.append(f"| {r['variant']} | {why} | | | | | |")
            continue
        voxels = r["size"] ** 3
        forward = f"{r['forward_s']:.1f} | {voxels / r['forward_s']:.3g}"
        backward = f"{r['backward_s']:.1f} | {voxels / r['backward_s']:.3g}" if "backward_s" in r else "- | -"
        peaks = r.get("worker_peak_mib")
        peak = ", ".join(f"{p:.0f}" for p in peaks) if peaks else f"{r['process_peak_mib']:.0f} (one process)"
        if r.get("restarts"):
            peak += f" ({r['restarts']} worker restarts)"
        error = f"{r['interior_error']:.1e}" if "interior_error" in r else "-"
        lines.append(f"| {r['variant']} | {forward} | {backward} | {peak} | {error} |")
    return "\n".join(lines) + "\n"


def run_volumes(volume: Volume, out: Path | None, command: str, variants: tuple[str, ...] = VARIANTS) -> int:
    records = []
    for variant in variants:
        if variant == "dask-image" and not installed("dask_image"):
            print("dask-image is not installed (pip install dask-image): left out")
            continue
        print(f"{variant} ...", flush=True)
        records.append(_in_subprocess(variant, volume))
        print(f"  {records[-1]}")
    text = markdown(records, command)
    print(text)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        name = f"cpu-volumes-{volume.size}-k{volume.kernel}"
        (out / f"{name}.md").write_text(text)
        (out / f"{name}.json").write_text(json.dumps(records, indent=1) + "\n")
    return 0 if all("error" not in r for r in records) else 1
