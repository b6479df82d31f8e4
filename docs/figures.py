"""The figure of docs/how-it-works.md: dX of a 2x2 kernel at stride 2, step by step. docs/conf.py runs
it at every build (``python docs/figures.py OUT.png`` draws it anywhere)."""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import xpconv

kernel = np.array([[1, 2], [3, 4]])
dz = np.array([[1, 2], [3, 4]])
padded = xpconv.pad(xpconv.dilate(dz, 2), ((1, 1), (1, 1)))  # 5x5
rotated = xpconv.rotate180(kernel)
dx = np.tensordot(xpconv.windows(padded, 2), rotated, axes=2)  # 4x4, the padding of x is 0 here
i, j = 1, 2  # the dX entry drawn: the 2x2 window of the padded, dilated dz at (1, 2)


def grid(axis, values, title, window=None, dilated=None):
    axis.imshow(np.zeros(values.shape), cmap="Greys", vmin=0, vmax=1)
    for (r, c), v in np.ndenumerate(values):
        inserted = dilated is not None and not dilated[r, c]
        axis.text(c, r, str(v), ha="center", va="center", color="0.6" if inserted else "black", fontsize=12)
    if window is not None:
        r, c = window
        axis.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 2, 2, fill=False, edgecolor="tab:red", linewidth=2.5))
    axis.set_xticks(range(values.shape[1]))
    axis.set_yticks(range(values.shape[0]))
    axis.set_title(title, fontsize=10)


figure, axes = plt.subplots(1, 4, figsize=(12, 3.4))
original = np.zeros((5, 5), bool)
original[1:4:2, 1:4:2] = True
grid(axes[0], padded, "dz dilated by 2, padded by 1\n(grey: inserted zeros)", window=(i, j), dilated=original)
grid(axes[1], kernel, "kernel")
grid(axes[2], rotated, "kernel rotated 180 degrees")
grid(axes[3], dx.astype(int), f"dX: entry ({i}, {j}) = {dx[i, j]}\n= window (red) . rotated kernel", window=None)
axes[3].add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="tab:red", linewidth=2.5))
figure.tight_layout()
figure.savefig(sys.argv[1] if len(sys.argv) > 1 else "dx-steps.png", dpi=110)
