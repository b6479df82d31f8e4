"""The figure of the user guide's Richardson-Lucy example: a 3-D volume in Dask chunks deconvolved by
xpconv's forward and its adjoint (``conv3d_input_grad``). docs/conf.py runs it at every build
(``python docs/deconvolution.py OUT.png`` draws it anywhere); about 10 s on 2 cores."""

import sys

import dask.array as da
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import xpconv

SIZE, CHUNK, ITERATIONS = 48, 24, 30
rng = np.random.default_rng(0)

# The truth: point sources and a hollow sphere of beads.
grid = np.indices((SIZE,) * 3) - SIZE / 2
radius = np.sqrt((grid**2).sum(axis=0))
truth = np.where(np.abs(radius - 12) < 1.0, 0.3, 0.0)
truth[tuple(rng.integers(6, SIZE - 6, (3, 10)))] = 3.0

# A microscope's point-spread function: a Gaussian three times as long along z (axis 0) as across.
z, y, x = np.indices((13, 7, 7)) - np.array([6, 3, 3])[:, None, None, None]
psf = np.exp(-(z**2) / (2 * 3.0**2) - (y**2 + x**2) / (2 * 1.0**2))
psf /= psf.sum()

lazy_psf = da.from_array(psf[None, None])
blurred = xpconv.conv3d(da.from_array(truth[None, None], chunks=(1, 1, CHUNK, CHUNK, CHUNK)), lazy_psf, padding="same")
counts = rng.poisson(np.maximum(np.asarray(blurred.compute()), 0) * 200)  # 200 photons per unit of brightness
observed = da.from_array(counts / 200.0 + 1e-3, chunks=(1, 1, CHUNK, CHUNK, CHUNK))
estimate = da.full_like(observed, float(observed.mean()))
for _ in range(ITERATIONS):
    ratio = observed / xpconv.conv3d(estimate, lazy_psf, padding="same")
    estimate = (estimate * xpconv.conv3d_input_grad(ratio, lazy_psf, observed.shape, padding="same")).persist()

panels = [
    ("observed (blurred, Poisson noise)", np.asarray(observed[0, 0])),
    (f"Richardson-Lucy, {ITERATIONS} iterations\n(Dask, {CHUNK}^3 chunks)", np.asarray(estimate[0, 0])),
    ("truth", truth),
]
figure, axes = plt.subplots(2, 4, figsize=(12, 6.2), gridspec_kw={"width_ratios": [1, 1, 1, 0.45]})
for column, (title, volume) in enumerate(panels):
    axes[0, column].imshow(volume.max(axis=0), cmap="magma")  # seen from above: projection along z
    axes[1, column].imshow(volume.max(axis=1), cmap="magma", aspect="auto")  # from the side: z down
    axes[0, column].set_title(title, fontsize=10)
axes[0, 3].imshow(psf.max(axis=0), cmap="magma")
axes[0, 3].set_title("PSF (7x7 across)", fontsize=10)
axes[1, 3].imshow(psf.max(axis=1), cmap="magma", aspect="auto")
axes[1, 3].set_title("PSF along z (13)", fontsize=10)
axes[0, 0].set_ylabel("max along z")
axes[1, 0].set_ylabel("max along y (z down)")
for axis in axes.flat:
    axis.set_xticks([])
    axis.set_yticks([])
figure.tight_layout()
figure.savefig(sys.argv[1] if len(sys.argv) > 1 else "deconvolution.png", dpi=100)
