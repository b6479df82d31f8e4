"""Small plausible bugs put into the code one at a time: the tests named beside each must go red.

``python tests/mutations.py [words...]`` (or ``nox -s mutations``) applies each mutation (a line
replaced), runs its tests, prints RED or GREEN, and restores the file; with words, only the
mutations whose names contain one. A GREEN line is a blind spot of the suite.
"""

# ruff: noqa: E501  (the mutations quote source lines verbatim)
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
MUTATIONS = [
    (
        "chunks: a chunk one sample too large",
        "src/xpconv/_contract.py",
        "    rows = max(1, min(batch, budget // max(1, sample_bytes)))",
        "    rows = max(1, min(batch, budget // max(1, sample_bytes) + 1))",
        "tests/test_chunks.py",
    ),
    (
        "chunks: the last partial chunk dropped from a sum",
        "src/xpconv/_contract.py",
        "        for part in chunks:\n            partial = fn(*(a[part, ...] for a in arrays))",
        "        for part in chunks[:-1] if len(chunks) > 2 else chunks:\n            partial = fn(*(a[part, ...] for a in arrays))",
        "tests/test_chunks.py",
    ),
    (
        "transposed: per-side padding read after/before",
        "src/xpconv/_transpose.py",
        "    pads = resolve_padding(padding, x_shape[2:], kernel_size, stride_t, dilation_t)",
        "    pads = tuple((a, b) for b, a in resolve_padding(padding, x_shape[2:], kernel_size, stride_t, dilation_t))",
        "tests/test_nd_and_transposed.py",
    ),
    (
        "transposed: the untied bias's gradient summed over positions",
        "src/xpconv/_gradients.py",
        '    axes = (0, *_spatial_axes(geometry)) if mode == "tied" else (0,)',
        '    axes = (0, *_spatial_axes(geometry)) if mode == "tied" or geometry.in_channels != geometry.out_channels else (0,)',
        "tests/test_nd_and_transposed.py",
    ),
    (
        "3-D: strides of the last two axes swapped",
        "src/xpconv/_geometry.py",
        '    stride_t = int_tuple(stride, "stride", ndim)',
        '    stride_t = int_tuple(stride, "stride", ndim)\n    stride_t = (*stride_t[:-2], stride_t[-1], stride_t[-2]) if ndim == 3 else stride_t',
        "tests/test_nd_and_transposed.py",
    ),
    (
        "dtypes: the first array's dtype instead of the promoted one",
        "src/xpconv/_arguments.py",
        "        dtype = xp.result_type(*present.values())",
        "        dtype = next(iter(present.values())).dtype",
        "tests/test_dtypes.py",
    ),
    (
        "layers: a transposed layer's fan-in from in_channels",
        "src/xpconv/_layers.py",
        "        bound = 1 / math.sqrt(shape[1] * math.prod(kernel))",
        "        bound = 1 / math.sqrt((in_channels // groups if self.transposed else shape[1]) * math.prod(kernel))",
        "tests/test_layers.py",
    ),
    (
        "layers: parameters() without the bias",
        "src/xpconv/_layers.py",
        "        return pairs if self.bias is None else [*pairs, (self.bias, self.grad_bias)]",
        "        return pairs",
        "tests/test_layers.py",
    ),
    (
        "fuzz: the transposed kernel's rank unchecked",
        "src/xpconv/_transpose.py",
        '    if len(kernel_shape) != ndim + 2:\n        raise ValueError(f"kernel must be {ndim + 2}-D (C_in, F // groups, *kernel_size), got shape {kernel_shape}")',
        "",
        "tests/test_fuzz.py",
    ),
    (
        "dask: a pass computed eagerly",
        "src/xpconv/_dask.py",
        '    return parts if combine == "concat" else parts.sum(axis=0)',
        '    parts = parts.persist()\n    return parts if combine == "concat" else parts.sum(axis=0)',
        "tests/test_winograd.py tests/test_dask.py",
    ),
    (
        "gpu: a buffer made on the default device",
        "src/xpconv/_contract.py",
        "    result = xp.empty((batch, *first.shape[1:]), dtype=first.dtype, device=device_of(first))",
        "    result = xp.empty((batch, *first.shape[1:]), dtype=first.dtype)",
        "tests/test_gpu_plumbing.py tests/test_meta.py tests/test_chunks.py",
    ),
    (
        "no torch: the loop reference's dX not conjugated",
        "tests/helpers.py",
        '        dpadded[where] += np.einsum("nf...,fc->nc...", grads, np.conj(weights))',
        '        dpadded[where] += np.einsum("nf...,fc->nc...", grads, weights)',
        "tests/test_references.py",
    ),
    (
        "winograd: the last partial tile dropped",
        "src/xpconv/_winograd.py",
        "        return tuple(_ceil_div(_ceil_div(o, d), self.m) for o, d in zip(self.out, self.dilation))",
        "        return tuple(max(1, _ceil_div(o, d) // self.m) for o, d in zip(self.out, self.dilation))",
        "tests/test_winograd.py",
    ),
    (
        "fft: a transform one shorter",
        "src/xpconv/_fft.py",
        "            lengths.append(fast_length(max(n + before, n + after - tail, (o - 1) * s + 1, span, 1)))",
        "            lengths.append(fast_length(max(n + before, n + after - tail, (o - 1) * s + 1, span, 1) - 1))",
        "tests/test_fft.py",
    ),
    (
        "complex: dK from the unconjugated input",
        "src/xpconv/_api.py",
        "        dz, conjugate(x, xp), conjugate(kernel, xp), xp, geometry, options.method, options.workspace",
        "        dz, x, conjugate(kernel, xp), xp, geometry, options.method, options.workspace",
        "tests/test_complex.py",
    ),
]
only = sys.argv[1:]
failures = 0
for name, path, old, new, tests in MUTATIONS:
    if only and not any(o in name for o in only):
        continue
    file = ROOT / path
    text = file.read_text()
    assert text.count(old) == 1, f"{name}: the original line is not there exactly once"
    file.write_text(text.replace(old, new))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests.split()],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "CI": "true", "XPCONV_TEST_BACKENDS": "numpy,torch,array_api_strict,dask,jax"},
            timeout=900,
        )
        last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-200:]
        print(f"{'RED  ' if result.returncode else 'GREEN'} {name}: {last}", flush=True)
        failures += result.returncode == 0
    finally:
        file.write_text(text)
sys.exit(failures)
