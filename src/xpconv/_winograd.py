"""Winograd minimal filtering F(m x m, 3 x 3): stride-1 3x3 correlations with fewer multiplications.

A tile of ``a x a`` input values (``a = m + 2``) gives ``m x m`` outputs of a 3x3 correlation as

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (``*`` elementwise)

so the ``9 m^2`` multiply-adds per tile and channel pair become ``a^2`` (F(4x4, 3x3): 36 instead of
144). With channels, ``*`` becomes one ``(F, C) @ (C, tiles)`` matrix product per tile position
``(i, j)``: ``a^2`` products in all, each ``9 m^2 / a^2`` times cheaper than the column matrix's.
The transforms of a whole batch of tiles are matrix products too, with the Kronecker products
``B^T (x) B^T``, ``G (x) G`` and ``A^T (x) A^T``.

Everything here is written against the array API standard; the tile view comes from
``_backends.window_view``. The three passes:

- forward (and dX at stride 1, which is the correlation of ``dz`` with the rotated, channel-swapped
  kernel): :func:`winograd_correlate`;
- dK, the transpose of the forward map in the Winograd domain: ``dK = G^T [sum_tiles (A dY A^T) *
  (B^T d B)] G``, where the sum over tiles is a ``(F, tiles) @ (tiles, C)`` product per tile position:
  :func:`winograd_weight_grad`.

Dilation ``d`` folds in without another pass: a dilation-``d`` correlation is ``d_h * d_w``
dilation-1 correlations on the phase sub-images ``x[p_h::d_h, p_w::d_w]``, and the phases become one
more batch axis of the tile view. Groups are a batch axis of the products; a depthwise layer
(one channel per group) needs no matrix product at all, only an elementwise one.

The transform matrices are built exactly (``fractions``) by the Cook-Toom construction from the
interpolation points ``0, 1, -1, 2, -2, 1/2, -1/2``, infinity; with ``m = 4`` they are those of
Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016). Fractional transforms
make the results inexact for integer inputs, which therefore never take this path.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

from array_api_compat import device as device_of

from ._backends import itemsize, window_view
from ._blocks import conjugate, pad_or_crop
from ._contract import over_batch
from .typing import Array, Namespace

KERNEL = 3
# Output tile size. F(4x4, 3x3) measured fastest on the benchmark layers (2 cores, NumPy and torch)
# with float32 errors of ~1e-6 relative; F(6x6, 3x3) transforms lose about 10x more accuracy.
TILE = 4
POINTS = (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))
# Temporaries per batch chunk on the CPU: tiles, their transform, the products and the output tiles.
CPU_CHUNK_BYTES = 6 * 2**20

__all__ = ["TILE", "Tiling", "transform_matrices", "winograd_correlate", "winograd_weight_grad"]


@functools.cache
def transform_matrices(m: int, r: int = KERNEL) -> tuple[tuple[tuple[Fraction, ...], ...], ...]:
    """Exact ``(B^T, G, A^T)`` of F(m, r): ``(a x a, a x r, m x a)`` with ``a = m + r - 1``.

    The correlation of ``d`` (``a`` values) with ``g`` (``r`` values) is ``A^T ((G g) * (B^T d))``.

    >>> bt, g, at = transform_matrices(2)
    >>> [[int(v) for v in row] for row in bt]
    [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, -1, 0, 1]]
    """
    alpha = m + r - 1
    points = [Fraction(p) for p in POINTS[: alpha - 1]]

    def vandermonde(columns: int) -> list[list[Fraction]]:
        rows = [[p**i for i in range(columns)] for p in points]
        return [*rows, [Fraction(0)] * (columns - 1) + [Fraction(1)]]  # the point at infinity

    # Linear convolution (Toom-Cook): s = V^-1 ((Vm h) * (Vr g)); correlation is its transpose,
    # y = Vm^T ((Vr g) * (V^-T d)). Each row of B^T = V^-T is scaled to small integers, G's row
    # divided by the same factor.
    inverse = _inverse(vandermonde(alpha))
    bt = [[inverse[j][i] for j in range(alpha)] for i in range(alpha)]
    g = vandermonde(r)
    for j in range(alpha):
        denominator = math.lcm(*(v.denominator for v in bt[j]))
        scale = Fraction(denominator, math.gcd(*(int(v * denominator) for v in bt[j])))
        bt[j] = [v * scale for v in bt[j]]
        g[j] = [v / scale for v in g[j]]
    vm = vandermonde(m)
    at = [[vm[j][i] for j in range(alpha)] for i in range(m)]
    return tuple(tuple(row) for row in bt), tuple(tuple(row) for row in g), tuple(tuple(row) for row in at)


def _inverse(matrix: list[list[Fraction]]) -> list[list[Fraction]]:
    """Gauss-Jordan elimination in exact arithmetic."""
    n = len(matrix)
    rows = [[*row, *(Fraction(int(i == j)) for j in range(n))] for i, row in enumerate(matrix)]
    for column in range(n):
        pivot = next(i for i in range(column, n) if rows[i][column] != 0)
        rows[column], rows[pivot] = rows[pivot], rows[column]
        rows[column] = [v / rows[column][column] for v in rows[column]]
        for i in range(n):
            if i != column and rows[i][column] != 0:
                factor = rows[i][column]
                rows[i] = [a - factor * b for a, b in zip(rows[i], rows[column])]
    return [row[n:] for row in rows]


@functools.cache
def _kronecker(m: int, which: str) -> tuple[tuple[float, ...], ...]:
    """The 2-D transforms as matrices on flattened tiles: ``kron(M, M)`` for M in B^T, G, A^T."""
    matrix = transform_matrices(m)["bga".index(which)]
    return tuple(tuple(float(a * b) for a in row_a for b in row_b) for row_a in matrix for row_b in matrix)


def _constant(xp: Namespace, m: int, which: str, like: Array) -> Array:
    return xp.asarray(_kronecker(m, which), dtype=like.dtype, device=device_of(like))


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Tiling:
    """How F(m x m, 3 x 3) tiles cover one stride-1 3x3 correlation.

    ``pads`` zero-pad the input (a negative amount crops), ``out`` is the output size. Per axis,
    ``t = ceil(ceil(out / d) / m)`` tiles of each of the ``d`` dilation phases cover the outputs, and
    they read ``d * (t * m + 2)`` input rows (``reach``).
    """

    pads: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    groups: int
    out: tuple[int, ...]
    m: int = TILE

    @property
    def alpha(self) -> int:
        return self.m + KERNEL - 1

    @property
    def tiles(self) -> tuple[int, ...]:
        return tuple(_ceil_div(_ceil_div(o, d), self.m) for o, d in zip(self.out, self.dilation))

    @property
    def reach(self) -> tuple[int, ...]:
        return tuple(d * (t * self.m + KERNEL - 1) for t, d in zip(self.tiles, self.dilation))

    def input_tiles(self, x: Array, xp: Namespace) -> Array:
        """Pad ``x`` ``(n, C, H, W)`` to ``reach``, gather its tiles and transform them (``B^T d B``):
        ``(a^2, groups, C // groups, n * P)`` with ``P = d_h * d_w * t_h * t_w`` tiles per sample."""
        n, channels = x.shape[0], x.shape[1]
        alpha, reach, (dh, dw) = self.alpha, self.reach, self.dilation
        fitted = pad_or_crop(
            x, xp, [(before, r - size - before) for (before, _), r, size in zip(self.pads, reach, x.shape[2:])]
        )
        # (n, C, L_h * d_h, L_w * d_w) -> phases (n, d_h, d_w, C, L_h, L_w) -> tiles (..., t_h, t_w, a, a)
        phases = xp.reshape(fitted, (n, channels, reach[0] // dh, dh, reach[1] // dw, dw))
        phases = xp.permute_dims(phases, (0, 3, 5, 1, 2, 4))
        view = window_view(phases, xp, (alpha, alpha), (self.m, self.m), (1, 1), self.tiles)
        gathered = xp.reshape(xp.permute_dims(view, (6, 7, 3, 0, 1, 2, 4, 5)), (alpha * alpha, -1))
        transformed = xp.matmul(_constant(xp, self.m, "b", x), gathered)
        return xp.reshape(transformed, (alpha * alpha, self.groups, channels // self.groups, -1))

    def sample_bytes(self, x: Array, xp: Namespace, filters: int) -> int:
        """Bytes of one sample's tile temporaries (input tiles, their transform, the products), by
        which ``_contract.over_batch`` sizes the batch chunks."""
        per_sample = self.alpha**2 * (2 * x.shape[1] + filters) * math.prod(self.dilation)
        return per_sample * math.prod(self.tiles) * itemsize(xp, x.dtype)


def _kernel_transform(kernel: Array, xp: Namespace, groups: int, m: int) -> Array:
    """``G g G^T`` for every filter and channel: ``(a^2, groups, F // groups, C // groups)``."""
    filters, per_group = kernel.shape[0], kernel.shape[1]
    flat = xp.matrix_transpose(xp.reshape(kernel, (filters * per_group, KERNEL * KERNEL)))
    return xp.reshape(xp.matmul(_constant(xp, m, "g", kernel), flat), (-1, groups, filters // groups, per_group))


def winograd_correlate(x: Array, kernel: Array, xp: Namespace, tiling: Tiling, workspace: int) -> Array:
    """Stride-1 correlation of ``x`` ``(N, C, H, W)``, padded as ``tiling`` says, with a 3x3 ``kernel``
    ``(F, C // groups, 3, 3)``: ``(N, F, *tiling.out)``."""
    m, alpha, tiles, (dh, dw) = tiling.m, tiling.alpha, tiling.tiles, tiling.dilation
    filters = kernel.shape[0]
    if math.prod(tiling.out) == 0:  # nothing to compute (and no tile to view)
        return xp.zeros((x.shape[0], filters, *tiling.out), dtype=x.dtype, device=device_of(x))
    weights = _kernel_transform(kernel, xp, tiling.groups, m)
    depthwise = x.shape[1] == tiling.groups
    inverse = _constant(xp, m, "a", x)

    def chunk(x_part: Array) -> Array:
        v = tiling.input_tiles(x_part, xp)
        # One (F/g, C/g) @ (C/g, tiles) product per tile position and group; elementwise when C/g == 1.
        products = weights * v if depthwise else xp.matmul(weights, v)
        y = xp.matmul(inverse, xp.reshape(products, (alpha * alpha, -1)))
        # (m_i, m_j, F, n, d_h, d_w, t_h, t_w) -> (n, F, t_h, m_i, d_h, t_w, m_j, d_w): output row t*m*d + i*d + p.
        # Left a view: over_batch copies it into place.
        y = xp.reshape(y, (m, m, filters, x_part.shape[0], dh, dw, *tiles))
        return xp.permute_dims(y, (3, 2, 6, 0, 4, 7, 1, 5))

    sample_bytes = tiling.sample_bytes(x, xp, filters)
    tiled = over_batch(chunk, [x], xp, sample_bytes=sample_bytes, workspace=workspace, cpu_budget=CPU_CHUNK_BYTES)
    z = xp.reshape(tiled, (x.shape[0], filters, tiles[0] * m * dh, tiles[1] * m * dw))
    return z[:, :, : tiling.out[0], : tiling.out[1]]


def winograd_weight_grad(dz: Array, x: Array, xp: Namespace, tiling: Tiling, workspace: int) -> Array:
    """dK of a stride-1 3x3 correlation of ``x`` ``(N, C, H, W)``, padded as ``tiling`` says, given
    ``dz`` ``(N, F, *tiling.out)``: ``(F, C // groups, 3, 3)``."""
    m, alpha, tiles, (dh, dw) = tiling.m, tiling.alpha, tiling.tiles, tiling.dilation
    channels, filters, groups = x.shape[1], dz.shape[1], tiling.groups
    forward_output = xp.matrix_transpose(_constant(xp, m, "a", x))  # A (x) A: (a^2, m^2)
    fill = [(0, t * m * d - o) for t, d, o in zip(tiles, tiling.dilation, tiling.out)]

    def chunk(dz_part: Array, x_part: Array) -> Array:
        v = tiling.input_tiles(x_part, xp)
        # dz's m x m tiles, laid out as the forward's output tiles, then A dY A^T per tile.
        full = xp.reshape(pad_or_crop(dz_part, xp, fill), (x_part.shape[0], filters, tiles[0], m, dh, tiles[1], m, dw))
        flat = xp.reshape(xp.permute_dims(full, (3, 6, 1, 0, 4, 7, 2, 5)), (m * m, -1))
        grads = xp.reshape(xp.matmul(forward_output, flat), (alpha * alpha, groups, filters // groups, -1))
        if channels == groups:  # vecdot conjugates its first argument: conjugated twice, it is not
            return xp.vecdot(conjugate(grads, xp), v)[..., None]
        return xp.matmul(grads, xp.matrix_transpose(v))

    # Each chunk adds an (a^2, F, C // groups) product: chunks whose tiles outweigh it keep that cheap.
    accumulator = alpha * alpha * filters * (channels // groups) * itemsize(xp, x.dtype)
    budget = max(CPU_CHUNK_BYTES, 4 * accumulator)
    sample_bytes = tiling.sample_bytes(x, xp, filters)
    total = over_batch(
        chunk, [dz, x], xp, sample_bytes=sample_bytes, workspace=workspace, combine="sum", cpu_budget=budget
    )
    # dK = G^T W G per filter and channel.
    back = xp.matmul(xp.matrix_transpose(_constant(xp, m, "g", x)), xp.reshape(total, (alpha * alpha, -1)))
    return xp.reshape(xp.matrix_transpose(back), (filters, channels // groups, KERNEL, KERNEL))
