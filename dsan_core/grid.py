"""The grid of a scan, and the one check that a mask lies on it.

Geometry follows SimpleITK: size and spacing (x, y, z), origin (x, y, z) mm,
direction a row-major 3x3 cosine matrix as 9 numbers. A mask on another grid is
refused, never resampled: it usually means the wrong series or a flipped export,
and silently moving it would hide that.

Tolerances (one set for every mask, external, ground truth or our own): spacing
relative 1e-3; origin 0.05 mm absolute (exporters round positions, a voxel is
~0.5-1.5 mm); direction cosines 1e-3 absolute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dsan_core.errors import MaskError

SPACING_RTOL = 1e-3
ORIGIN_ATOL_MM = 0.05
DIRECTION_ATOL = 1e-3


@dataclass(frozen=True)
class ScanGeometry:
    """The grid of a scan or mask (SimpleITK conventions, all (x, y, z))."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def from_image(cls, image: Any) -> ScanGeometry:
        """From a SimpleITK.Image (or anything with the same four getters)."""
        return cls(
            tuple(int(v) for v in image.GetSize()),  # type: ignore[arg-type]
            tuple(float(v) for v in image.GetSpacing()),  # type: ignore[arg-type]
            tuple(float(v) for v in image.GetOrigin()),  # type: ignore[arg-type]
            tuple(float(v) for v in image.GetDirection()),
        )


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def check_same_grid(mask: ScanGeometry, scan: ScanGeometry, *, scan_id: str, kind: str) -> None:
    """Raise MaskError unless `mask` lies on the scan's grid (within the tolerances above).

    `kind` names the mask in the message ("lung", "infection", "label map").
    """
    mask_size, mask_spacing = mask.size, mask.spacing
    mask_origin, mask_direction = mask.origin, mask.direction
    if tuple(int(v) for v in mask_size) != tuple(scan.size):
        raise MaskError(
            f"{kind} mask: expected size {_fmt(scan.size)}, found {_fmt(mask_size)}",
            scan=scan_id, reason="geometry",
        )
    if not np.allclose(mask_spacing, scan.spacing, rtol=SPACING_RTOL, atol=0):
        raise MaskError(
            f"{kind} mask: expected spacing {_fmt(scan.spacing)} mm, found {_fmt(mask_spacing)}",
            scan=scan_id, reason="geometry",
        )
    # Origins may differ by less than a voxel's worth of rounding, never more.
    if not np.allclose(mask_origin, scan.origin, rtol=0, atol=ORIGIN_ATOL_MM):
        raise MaskError(
            f"{kind} mask: expected origin {_fmt(scan.origin)} mm, found {_fmt(mask_origin)}",
            scan=scan_id, reason="geometry",
        )
    if len(mask_direction) != len(scan.direction) or not np.allclose(
        mask_direction, scan.direction, rtol=0, atol=DIRECTION_ATOL
    ):
        raise MaskError(
            f"{kind} mask: expected direction {_fmt(scan.direction)}, "
            f"found {_fmt(mask_direction)}",
            scan=scan_id, reason="geometry",
        )


def validate_external_mask(
    mask_size: Sequence[int],
    mask_spacing: Sequence[float],
    mask_origin: Sequence[float],
    mask_direction: Sequence[float],
    scan: ScanGeometry,
    *,
    scan_id: str,
    kind: str,
) -> None:
    """`check_same_grid` for a mask given by its four geometry values."""
    mask = ScanGeometry(tuple(int(v) for v in mask_size),  # type: ignore[arg-type]
                        tuple(float(v) for v in mask_spacing),  # type: ignore[arg-type]
                        tuple(float(v) for v in mask_origin),  # type: ignore[arg-type]
                        tuple(float(v) for v in mask_direction))
    check_same_grid(mask, scan, scan_id=scan_id, kind=kind)
