"""Checks for masks made elsewhere (e.g. manual contours exported as NIfTI).

Geometry follows SimpleITK: size and spacing (x, y, z), origin (x, y, z) mm,
direction a row-major 3x3 cosine matrix as 9 numbers. Arrays are (z, y, x).
A mask is refused, never resampled: a mask on another grid usually means the wrong
series or a flipped export, and silently moving it would hide that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dsan_core.errors import MaskError


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


def validate_external_mask(
    mask_size: Sequence[int],
    mask_spacing: Sequence[float],
    mask_origin: Sequence[float],
    mask_direction: Sequence[float],
    scan: ScanGeometry,
    *,
    scan_id: str,
    kind: str,
    spacing_rtol: float = 1e-3,
    origin_atol_mm: float = 0.05,
    direction_atol: float = 1e-3,
) -> None:
    """Raise MaskError unless the mask lies on the scan's grid (within the tolerances).

    `kind` names the mask in the message ("lung", "infection", "label map").
    """
    if tuple(int(v) for v in mask_size) != tuple(scan.size):
        raise MaskError(
            f"{kind} mask: expected size {_fmt(scan.size)}, found {_fmt(mask_size)}",
            scan=scan_id, reason="geometry",
        )
    if not np.allclose(mask_spacing, scan.spacing, rtol=spacing_rtol, atol=0):
        raise MaskError(
            f"{kind} mask: expected spacing {_fmt(scan.spacing)} mm, found {_fmt(mask_spacing)}",
            scan=scan_id, reason="geometry",
        )
    # Origins may differ by less than a voxel's worth of rounding, never more.
    if not np.allclose(mask_origin, scan.origin, rtol=0, atol=origin_atol_mm):
        raise MaskError(
            f"{kind} mask: expected origin {_fmt(scan.origin)} mm, found {_fmt(mask_origin)}",
            scan=scan_id, reason="geometry",
        )
    if len(mask_direction) != len(scan.direction) or not np.allclose(
        mask_direction, scan.direction, rtol=0, atol=direction_atol
    ):
        raise MaskError(
            f"{kind} mask: expected direction {_fmt(scan.direction)}, "
            f"found {_fmt(mask_direction)}",
            scan=scan_id, reason="geometry",
        )


def _values(array: np.ndarray) -> list[float]:
    return [float(v) for v in np.unique(array)[:10]]


def binary_mask(array: np.ndarray, *, scan_id: str, kind: str) -> np.ndarray:
    """A uint8 0/1 mask from an array whose values are 0 and 1 only (bool allowed)."""
    values = np.unique(array)
    if not np.isin(values, (0, 1)).all():
        raise MaskError(
            f"{kind} mask: expected binary values 0/1, found {_values(array)}",
            scan=scan_id, reason="values",
        )
    return (array == 1).astype(np.uint8)


def split_label_map(label_map: np.ndarray, *, scan_id: str) -> tuple[np.ndarray, np.ndarray]:
    """A 0 background / 1 lung / 2 infection map -> uint8 (lung, infection); lung includes 2."""
    values = np.unique(label_map)
    if not np.isin(values, (0, 1, 2)).all():
        raise MaskError(
            f"label map: expected values 0 (background), 1 (lung), 2 (infection), "
            f"found {_values(label_map)}",
            scan=scan_id, reason="values",
        )
    return (label_map >= 1).astype(np.uint8), (label_map == 2).astype(np.uint8)


def external_masks(
    lung: np.ndarray, infection: np.ndarray | None, *, scan_id: str
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (lung, infection) from two binary masks, or from a label map when `infection`
    is None. The lung is widened to include the infection (it is always inside the lung)."""
    if infection is None:
        return split_label_map(lung, scan_id=scan_id)
    if lung.shape != infection.shape:
        raise MaskError(
            f"expected lung and infection masks of one shape, found {lung.shape} and "
            f"{infection.shape}",
            scan=scan_id, reason="geometry",
        )
    lung_b = binary_mask(lung, scan_id=scan_id, kind="lung")
    infection_b = binary_mask(infection, scan_id=scan_id, kind="infection")
    return lung_b | infection_b, infection_b
