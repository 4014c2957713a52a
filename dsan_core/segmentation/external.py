"""Checks for masks made elsewhere (e.g. manual contours exported as NIfTI): values
and label maps here; the grid check is `dsan_core.grid`. Arrays are (z, y, x).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from dsan_core.errors import MaskError
from dsan_core.grid import ScanGeometry, check_same_grid, validate_external_mask

__all__ = [
    "ScanGeometry",
    "binary_mask",
    "check_same_grid",
    "conform_mask",
    "external_masks",
    "split_label_map",
    "validate_external_mask",
]


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


def conform_mask(mask: sitk.Image, reference: sitk.Image, *, scan_id: str,
                 kind: str) -> sitk.Image:
    """A mask made elsewhere as a uint8 0/1 image on the reference scan's grid: refused
    (MaskError) unless it lies on that grid and holds only 0 and 1. One rule for every
    imported mask (ground truth at ingestion, external segmentations)."""
    check_same_grid(ScanGeometry.from_image(mask), ScanGeometry.from_image(reference),
                    scan_id=scan_id, kind=kind)
    binary = binary_mask(sitk.GetArrayViewFromImage(mask), scan_id=scan_id, kind=kind)
    out = sitk.GetImageFromArray(binary)
    out.CopyInformation(reference)
    return out
