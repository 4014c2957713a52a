"""The infection ratio (METHOD.md): infection volume inside the lung / lung volume.

Masks are (z, y, x), any integer or bool dtype, non-zero = inside; spacing is
(x, y, z) in mm, so one voxel is prod(spacing) / 1000 ml.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dsan_core.errors import MaskError


@dataclass(frozen=True)
class RatioResult:
    """Volumes in ml and the ratio in [0, 1]."""

    lung_ml: float
    infection_ml: float
    infection_ratio: float


def voxel_ml(spacing: Sequence[float]) -> float:
    """Volume of one voxel in ml for spacing (x, y, z) mm."""
    x, y, z = (float(s) for s in spacing)
    return x * y * z / 1000.0


def infection_ratio(
    lung: np.ndarray,
    infection: np.ndarray,
    spacing: Sequence[float],
    *,
    scan_id: str | None = None,
) -> RatioResult:
    """Infection inside the lung over lung volume; `infection_ml` counts only the inside part.

    Raises MaskError when the shapes differ or no lung voxel is found.
    """
    if lung.shape != infection.shape:
        raise MaskError(
            f"expected lung and infection masks of one shape, found {lung.shape} and "
            f"{infection.shape}",
            scan=scan_id,
        )
    if len(spacing) != 3 or min(spacing) <= 0:
        raise MaskError(f"expected 3 positive spacings (x, y, z) mm, found {tuple(spacing)}",
                        scan=scan_id)
    lung_b = lung.astype(bool)
    n_lung = int(lung_b.sum())
    if n_lung == 0:
        raise MaskError("expected a lung mask with at least one voxel, found none (no lung found)",
                        scan=scan_id, reason="no_lung")
    n_inf = int(np.logical_and(lung_b, infection.astype(bool)).sum())
    per_voxel = voxel_ml(spacing)
    return RatioResult(
        lung_ml=n_lung * per_voxel,
        infection_ml=n_inf * per_voxel,
        infection_ratio=n_inf / n_lung,
    )
