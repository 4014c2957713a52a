"""Resampling onto the final grid: the fast single step and the two-step reference.

Arrays are (z, y, x) and HU; geometry vectors are (x, y, z) (see `geometry`).

`resample_image` applies, in one pass per axis, the exact per-axis composition of
the two-step definition (linear onto the resampled grid, Gaussian anti-aliasing
when shrinking, linear onto the scaled grid, crop/pad) cut to a few taps. The
z pass reads the CT in its own dtype (int16 stays int16) plane by plane; the y and
x passes are block-banded matrix products. Only the part of the final grid that
sees the CT is computed; the rest is the padding value.

`resample_two_step` is the straightforward SimpleITK version of the definition,
for tests and the benchmark.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch

from dsan_core.preprocessing.geometry import GridGeometry, index_transform, resampled_origin
from dsan_core.preprocessing.kernels import (
    BandedAxis,
    antialias_sigma,
    banded,
    nearest_index,
    two_step_matrix,
)
from dsan_core.tensors import shared_tensor

#: Output rows per block of the block-banded y and x products.
_BLOCK = 16


def _smoothing_sigma(geometry: GridGeometry, antialias: bool) -> float:
    return antialias_sigma(geometry.scale_factor) if antialias else 0.0


def axis_operators(geometry: GridGeometry, *, antialias: bool, taps: int = 6
                   ) -> tuple[BandedAxis, BandedAxis, BandedAxis]:
    """The banded two-step operator of each axis, in (z, y, x) order."""
    o1 = resampled_origin(geometry)
    start1, step1 = index_transform(geometry.original_origin, geometry.original_spacing, o1,
                                    geometry.resampled_spacing, geometry.original_direction)
    start2, step2 = index_transform(o1, geometry.resampled_spacing, geometry.final_origin,
                                    geometry.final_spacing, geometry.original_direction)
    sigma = _smoothing_sigma(geometry, antialias)
    ops = [banded(two_step_matrix(geometry.original_size[a], geometry.resampled_size[a],
                                  start1[a], step1[a], geometry.final_size[a], start2[a],
                                  step2[a], sigma), taps) for a in (2, 1, 0)]
    return ops[0], ops[1], ops[2]


#: Output z planes resampled together, so that intermediates stay in cache.
_CHUNK = 4


def _z_pass(volume: torch.Tensor, op: BandedAxis, k: int, plane: torch.Tensor,
            pad: float) -> None:
    """Output plane k of the z operator into `plane`; reads the input in its own dtype."""
    first = True
    for j, w in enumerate(op.weights[k].tolist()):
        if w == 0.0:
            continue
        if first:
            torch.mul(volume[int(op.start[k]) + j], w, out=plane)
            first = False
        else:
            plane.add_(volume[int(op.start[k]) + j], alpha=w)
    if first:
        plane.zero_()
    if op.pad_weight[k] != 0.0:
        plane.add_(float(op.pad_weight[k]) * pad)


def _block_matrices(op: BandedAxis, lo: int, hi: int, n_in: int
                    ) -> list[tuple[int, int, int, int, torch.Tensor]]:
    """(k0, k1, i0, i1, W) blocks: outputs k0..k1-1 need only inputs i0..i1-1."""
    blocks = []
    taps = op.taps
    for k0 in range(lo, hi, _BLOCK):
        k1 = min(hi, k0 + _BLOCK)
        i0 = int(op.start[k0:k1].min())
        i1 = min(n_in, int(op.start[k0:k1].max()) + taps)
        matrix = np.zeros((k1 - k0, i1 - i0), dtype=np.float32)
        for k in range(k0, k1):
            s = int(op.start[k]) - i0
            width = min(taps, i1 - i0 - s)
            matrix[k - k0, s:s + width] = op.weights[k, :width]
        blocks.append((k0 - lo, k1 - lo, i0, i1, torch.from_numpy(matrix)))
    return blocks


def _pad_term(op: BandedAxis, lo: int, hi: int, pad: float) -> torch.Tensor | None:
    term = op.pad_weight[lo:hi] * np.float32(pad)
    return torch.from_numpy(term) if bool(np.any(term)) else None


def resample_image(volume: np.ndarray, geometry: GridGeometry, *, pad: float,
                   antialias: bool, taps: int = 6) -> torch.Tensor:
    """The CT (z, y, x), any real dtype, on the final grid as float32 (z, y, x)."""
    op_z, op_y, op_x = axis_operators(geometry, antialias=antialias, taps=taps)
    out = torch.full(geometry.final_shape, float(pad), dtype=torch.float32)
    (z0, z1), (y0, y1), (x0, x1) = op_z.active(), op_y.active(), op_x.active()
    if z1 <= z0 or y1 <= y0 or x1 <= x0:
        return out
    source = shared_tensor(np.ascontiguousarray(volume))  # a read-only view is fine
    n_y, n_x = source.shape[1], source.shape[2]
    y_blocks = _block_matrices(op_y, y0, y1, n_y)
    x_blocks = _block_matrices(op_x, x0, x1, n_x)
    y_pad, x_pad = _pad_term(op_y, y0, y1, pad), _pad_term(op_x, x0, x1, pad)
    # Per chunk of output planes: z, then y, then x, in buffers laid out (y, z, x)
    # so that each y block is one matrix product over contiguous rows.
    planes = torch.empty((n_y, _CHUNK, n_x), dtype=torch.float32)
    rows = torch.empty((y1 - y0, _CHUNK, n_x), dtype=torch.float32)
    for c0 in range(z0, z1, _CHUNK):
        c = min(_CHUNK, z1 - c0)
        for kk in range(c):
            _z_pass(source, op_z, c0 + kk, planes[:, kk, :], pad)
        flat = planes[:, :c, :].reshape(n_y, c * n_x) if c < _CHUNK else planes.view(n_y, -1)
        for k0, k1, i0, i1, matrix in y_blocks:
            rows[k0:k1, :c, :] = torch.matmul(matrix, flat[i0:i1]).view(k1 - k0, c, n_x)
        if y_pad is not None:
            rows[:, :c, :] += y_pad.view(-1, 1, 1)
        target = out[c0:c0 + c, y0:y1, x0:x1].permute(1, 0, 2)
        for k0, k1, i0, i1, matrix in x_blocks:
            target[:, :, k0:k1] = torch.matmul(rows[:, :c, i0:i1], matrix.T)
        if x_pad is not None:
            target += x_pad.view(1, 1, -1)
    return out


def resample_mask(mask: np.ndarray, geometry: GridGeometry) -> np.ndarray:
    """A label mask (z, y, x) on the final grid: nearest neighbour in both steps,
    composed exactly; 0 outside the CT. Keeps the mask's dtype."""
    o1 = resampled_origin(geometry)
    start1, step1 = index_transform(geometry.original_origin, geometry.original_spacing, o1,
                                    geometry.resampled_spacing, geometry.original_direction)
    start2, step2 = index_transform(o1, geometry.resampled_spacing, geometry.final_origin,
                                    geometry.final_spacing, geometry.original_direction)
    index = []
    for a in (2, 1, 0):
        mid = nearest_index(geometry.final_size[a], geometry.resampled_size[a], start2[a],
                            step2[a])
        first = nearest_index(geometry.resampled_size[a], geometry.original_size[a], start1[a],
                              step1[a])
        index.append(np.where(mid >= 0, first[np.maximum(mid, 0)], -1))
    out = np.zeros(geometry.final_shape, dtype=mask.dtype)
    inside = [np.flatnonzero(i >= 0) for i in index]
    if any(i.size == 0 for i in inside):
        return out
    # The inside samples are contiguous: gather them axis by axis (cheap copies).
    (z0, z1), (y0, y1), (x0, x1) = ((int(i[0]), int(i[-1]) + 1) for i in inside)
    gathered = np.take(mask, index[0][z0:z1], axis=0)
    gathered = np.take(gathered, index[1][y0:y1], axis=1)
    out[z0:z1, y0:y1, x0:x1] = np.take(gathered, index[2][x0:x1], axis=2)
    return out


def _image(array: np.ndarray, spacing: tuple[float, ...], origin: tuple[float, ...],
           direction: tuple[float, ...]) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def resample_two_step(volume: np.ndarray, geometry: GridGeometry, *, pad: float,
                      antialias: bool, is_mask: bool = False) -> np.ndarray:
    """Reference: the definition written out with SimpleITK, one step at a time.

    Resample to the resampled grid, smooth (images, when shrinking), resample to
    the scaled grid, then crop/pad to the final grid. Images come back float32.
    """
    interpolator = sitk.sitkNearestNeighbor if is_mask else sitk.sitkLinear
    source = volume if is_mask else volume.astype(np.float32)
    image = _image(np.ascontiguousarray(source), geometry.original_spacing,
                   geometry.original_origin, geometry.original_direction)
    step1 = sitk.Resample(image, list(geometry.resampled_size), sitk.Transform(), interpolator,
                          resampled_origin(geometry), geometry.resampled_spacing,
                          geometry.original_direction, pad, image.GetPixelID())
    sigma = 0.0 if is_mask else _smoothing_sigma(geometry, antialias)
    if sigma > 0:
        variance = [(sigma * s) ** 2 for s in geometry.resampled_spacing]
        step1 = sitk.DiscreteGaussian(step1, variance, 32, 1e-3, True)
    matrix = np.asarray(geometry.original_direction).reshape(3, 3)
    scaled_origin = np.asarray(geometry.final_origin) - matrix @ (
        np.asarray(geometry.final_spacing) * np.asarray(geometry.offset, dtype=np.float64))
    step2 = sitk.Resample(step1, list(geometry.scaled_size), sitk.Transform(), interpolator,
                          tuple(scaled_origin), geometry.final_spacing,
                          geometry.original_direction, pad, step1.GetPixelID())
    scaled = sitk.GetArrayFromImage(step2)
    return crop_or_pad(scaled, geometry, pad)


def crop_or_pad(scaled: np.ndarray, geometry: GridGeometry, pad: float) -> np.ndarray:
    """An array (z, y, x) on the scaled grid, centre-cropped/padded to the final grid."""
    out = np.full(geometry.final_shape, pad, dtype=scaled.dtype)
    src, dst = [], []
    for a in (2, 1, 0):
        offset, n_scaled, n_final = (geometry.offset[a], geometry.scaled_size[a],
                                     geometry.final_size[a])
        first = max(offset, 0)
        last = min(n_scaled, offset + n_final)
        src.append(slice(first, last))
        dst.append(slice(first - offset, last - offset))
    out[tuple(dst)] = scaled[tuple(src)]
    return out
