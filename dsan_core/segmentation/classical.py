"""A classical (threshold + morphology) lung and infection segmenter.

Arrays are (z, y, x), HU; spacing (x, y, z) mm. It is the baseline and the
bootstrap for unlabelled data, not a substitute for the VB-Net:

1. air = HU < `lung_hu_max`; air connected to the in-plane border of the volume is
   outside the body and dropped (so is the background around the table);
2. the largest two remaining air components are the lungs (the second only when it
   is at least a tenth of the first), components below `min_lung_ml` are ignored;
3. a 3-D closing (ball of `closing_mm`) and a 3-D hole fill add vessels and
   lesions inside or touching the lung boundary;
4. infection = lung voxels with HU in [infection_hu_min, infection_hu_max], opened
   with a small ball to drop thin vessels and the partial-volume rim at the pleura.

Known limits: the trachea and main bronchi count as lung when connected to it;
dense consolidation wider than the closing ball against the chest wall is missed;
vessels thicker than the opening ball count as infection; ground-glass darker than
`infection_hu_min` is missed. Expect infection ratios that are biased, not noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from dsan_core.config import ClassicalSegConfig
from dsan_core.errors import InputError, MaskError
from dsan_core.segmentation.components import keep_largest_two
from dsan_core.segmentation.ratio import voxel_ml


def ball(radius_mm: float, spacing: Sequence[float]) -> np.ndarray:
    """Boolean ellipsoidal structuring element (z, y, x) of `radius_mm` for spacing (x, y, z)."""
    radii = [max(0, int(radius_mm // s)) for s in reversed(tuple(spacing))]
    grids = np.ogrid[tuple(slice(-r, r + 1) for r in radii)]
    dist = sum((g * s) ** 2 for g, s in zip(grids, reversed(tuple(spacing)), strict=True))
    return np.asarray(dist <= radius_mm**2 + 1e-9)


def _outside_air(air: np.ndarray) -> np.ndarray:
    labels, _ = ndimage.label(air)
    border = np.concatenate(
        [labels[:, 0].ravel(), labels[:, -1].ravel(), labels[:, :, 0].ravel(),
         labels[:, :, -1].ravel()]
    )
    touching = np.unique(border[border > 0])
    return np.isin(labels, touching)


def segment_classical(
    hu: np.ndarray,
    spacing: Sequence[float],
    config: ClassicalSegConfig,
    *,
    scan_id: str,
    closing_mm: float = 8.0,
    opening_mm: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Lung and infection uint8 masks (z, y, x); raises MaskError when no lung is found."""
    if hu.ndim != 3:
        raise InputError(f"expected a 3-D (z, y, x) volume, found shape {hu.shape}", scan=scan_id)
    per_voxel = voxel_ml(spacing)
    air = hu < config.lung_hu_max
    inside_air = air & ~_outside_air(air)
    lung = keep_largest_two(inside_air, min_voxels=int(np.ceil(config.min_lung_ml / per_voxel)))
    if not lung.any():
        raise MaskError(
            f"expected a lung of at least {config.min_lung_ml} ml below {config.lung_hu_max} HU "
            f"inside the body, found none",
            scan=scan_id,
            reason="no_lung",
        )
    # Pad before closing so lungs touching the first/last slice are not eroded there.
    pad = ball(closing_mm, spacing).shape[0] // 2 + 1
    padded = np.pad(lung, ((pad, pad), (0, 0), (0, 0)), mode="edge")
    closed = ndimage.binary_closing(padded, structure=ball(closing_mm, spacing))[pad:-pad]
    # Holes are filled in 3-D: slice-wise filling would add the liver under the dome.
    lung = np.asarray(ndimage.binary_fill_holes(closed | lung), dtype=bool)
    dense = (hu >= config.infection_hu_min) & (hu <= config.infection_hu_max) & lung
    infection = ndimage.binary_opening(dense, structure=ball(opening_mm, spacing))
    return lung.astype(np.uint8), (infection & lung).astype(np.uint8)
