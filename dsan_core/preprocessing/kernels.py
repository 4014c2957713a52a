"""One-axis resampling operators, composed into one banded operator per axis.

Every grid of the chain shares the original direction, so each step is separable:
along one axis, output sample k sits at continuous input index start + k * step.
A step is a sparse matrix with one extra last column, the constant padding value
(what SimpleITK returns outside the image), so steps compose by matrix product:
the two-step chain "linear -> Gaussian -> linear" becomes one matrix per axis,
which `banded` cuts to a few taps for the fast resampler.

Boundary rules follow SimpleITK: a sample is inside when its continuous index is
in [-0.5, n - 0.5]; neighbours beyond the edge repeat the edge voxel; a sample
outside gets the padding value; the Gaussian repeats edge voxels (zero flux).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.special import ive

_EDGE_EPS = 1e-6


@dataclass(frozen=True)
class BandedAxis:
    """Output sample k = sum_j weights[k, j] * input[start[k] + j] + pad_weight[k] * pad."""

    start: np.ndarray  # (n_out,) int64
    weights: np.ndarray  # (n_out, taps) float32
    pad_weight: np.ndarray  # (n_out,) float32

    @property
    def taps(self) -> int:
        return int(self.weights.shape[1])

    def active(self) -> tuple[int, int]:
        """[lo, hi): the outputs that depend on at least one input sample."""
        used = np.flatnonzero(np.abs(self.weights).sum(axis=1) > 0)
        if used.size == 0:
            return 0, 0
        return int(used[0]), int(used[-1]) + 1


def _positions(n_out: int, start: float, step: float) -> np.ndarray:
    return start + step * np.arange(n_out, dtype=np.float64)


def _inside(p: np.ndarray, n_in: int) -> np.ndarray:
    return (p >= -0.5 - _EDGE_EPS) & (p <= n_in - 0.5 + _EDGE_EPS)


def _augmented(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_out: int,
               n_in: int) -> sp.csr_matrix:
    """(n_out + 1, n_in + 1) matrix; the last row passes the padding value through."""
    rows = np.concatenate([rows, [n_out]])
    cols = np.concatenate([cols, [n_in]])
    vals = np.concatenate([vals, [1.0]])
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_out + 1, n_in + 1))


def linear_step(n_out: int, n_in: int, start: float, step: float) -> sp.csr_matrix:
    """Linear interpolation at the positions start + k * step of an n_in grid."""
    p = _positions(n_out, start, step)
    inside = _inside(p, n_in)
    base = np.floor(p)
    frac = p - base
    lo = np.clip(base, 0, n_in - 1).astype(np.int64)
    hi = np.clip(base + 1, 0, n_in - 1).astype(np.int64)
    k = np.arange(n_out)
    pad = np.full(n_out, n_in)
    rows = np.concatenate([k, k])
    cols = np.concatenate([np.where(inside, lo, pad), np.where(inside, hi, pad)])
    vals = np.concatenate([np.where(inside, 1.0 - frac, 1.0), np.where(inside, frac, 0.0)])
    return _augmented(rows, cols, vals, n_out, n_in)


def nearest_index(n_out: int, n_in: int, start: float, step: float) -> np.ndarray:
    """Nearest input index per output sample, -1 where the sample is outside."""
    p = _positions(n_out, start, step)
    index = np.clip(np.floor(p + 0.5), 0, n_in - 1).astype(np.int64)
    return np.where(_inside(p, n_in), index, -1)


def gaussian_kernel(sigma: float, max_error: float = 1e-3) -> np.ndarray:
    """Lindeberg's discrete Gaussian (the kernel of ITK's DiscreteGaussian), odd length."""
    variance = sigma * sigma
    radius = 1
    while ive(radius, variance) > max_error and radius < 32:
        radius += 1
    kernel = ive(np.abs(np.arange(-radius, radius + 1)), variance)
    return kernel / kernel.sum()


def gaussian_step(n: int, sigma: float) -> sp.csr_matrix:
    """Discrete Gaussian smoothing (sigma in voxels) with repeated edge voxels."""
    kernel = gaussian_kernel(sigma)
    radius = kernel.size // 2
    k = np.repeat(np.arange(n), kernel.size)
    cols = np.clip(k + np.tile(np.arange(-radius, radius + 1), n), 0, n - 1)
    return _augmented(k, cols, np.tile(kernel, n), n, n)


def antialias_sigma(factor: float) -> float:
    """Gaussian sigma (in voxels of the grid being shrunk) used before shrinking by
    `factor` < 1: (1/factor - 1) / 2, the rule of scikit-image's `rescale`."""
    return max(0.0, (1.0 / factor - 1.0) / 2.0)


def two_step_matrix(n_in: int, n_mid: int, start1: float, step1: float, n_out: int,
                    start2: float, step2: float, sigma: float) -> sp.csr_matrix:
    """linear (onto the mid grid) -> Gaussian(sigma mid voxels) -> linear (onto the output)."""
    first = linear_step(n_mid, n_in, start1, step1)
    if sigma > 0:
        first = gaussian_step(n_mid, sigma) @ first
    return (linear_step(n_out, n_mid, start2, step2) @ first).tocsr()


def banded(matrix: sp.csr_matrix, taps: int) -> BandedAxis:
    """Keep, per output row, the `taps` consecutive inputs of largest weight; the
    dropped weight is given back proportionally so each row still sums to one."""
    dense = matrix.toarray()[:-1]
    pad = dense[:, -1].copy()
    inputs = dense[:, :-1]
    n_out, n_in = inputs.shape
    taps = max(1, min(taps, n_in))
    cumulative = np.concatenate([np.zeros((n_out, 1)), np.cumsum(inputs, axis=1)], axis=1)
    window_mass = cumulative[:, taps:] - cumulative[:, :-taps]
    start = np.argmax(window_mass, axis=1).astype(np.int64)
    weights = inputs[np.arange(n_out)[:, None], start[:, None] + np.arange(taps)]
    kept = weights.sum(axis=1)
    wanted = 1.0 - pad
    scale = np.divide(wanted, kept, out=np.zeros_like(kept), where=np.abs(kept) > 1e-12)
    weights = weights * scale[:, None]
    return BandedAxis(start=start, weights=weights.astype(np.float32),
                      pad_weight=pad.astype(np.float32))

