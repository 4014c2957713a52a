"""Pre-processing (METHOD.md "Pre-processing"): CT and masks onto one fixed grid.

Arrays are (z, y, x); spacings, sizes and origins are (x, y, z) in mm
(SimpleITK order); CT values are HU until windowed to [0, 1].

Modules: `geometry` (the grids and `GridGeometry`), `kernels` (one-axis
operators), `resample` (fast single step and the two-step reference),
`intensity` (window, lung masking), `scan` (one scan end to end).
"""

from __future__ import annotations

from dsan_core.preprocessing.geometry import (
    GridGeometry,
    compute_scale_factor,
    final_grid,
    map_to_original,
)
from dsan_core.preprocessing.intensity import AIR_HU, shift_lung_median_, window_normalise
from dsan_core.preprocessing.resample import resample_image, resample_mask, resample_two_step
from dsan_core.preprocessing.scan import PreprocessedScan, preprocess_arrays, preprocess_scan

__all__ = [
    "AIR_HU",
    "GridGeometry",
    "PreprocessedScan",
    "compute_scale_factor",
    "final_grid",
    "map_to_original",
    "preprocess_arrays",
    "preprocess_scan",
    "resample_image",
    "resample_mask",
    "resample_two_step",
    "shift_lung_median_",
    "window_normalise",
]
