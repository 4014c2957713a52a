"""Geometry checks of one series: slice order, spacing, duplicates, gaps, tilt, matrix.

Works on the rows of the `index_headers` DataFrame that belong to one series
(columns ipp_*, iop_*, rows, columns, pixel_spacing_*, sop_instance_uid). Slices
are ordered by their position projected on the orientation normal
n = row_cosines x column_cosines. Gantry tilt is the angle between the line the
slice positions follow and n: 0 for a normal axial stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dsan_core.config import IngestConfig
from dsan_core.dicom import reasons
from dsan_core.dicom.index import IOP_COLUMNS, IPP_COLUMNS

#: Orientation cosines may differ by this much between slices of one stack.
_ORIENTATION_TOLERANCE = 1e-3
#: Positions closer than this (mm, along the normal) are the same slice.
_DUPLICATE_MM = 1e-3
#: A gap of more than this many median spacings means a slice is missing.
_GAP_FACTOR = 1.5


@dataclass(frozen=True)
class GeometryReport:
    """Outcome of `check_geometry`. `reason` is None exactly when `ok`."""

    ok: bool
    reason: str | None
    message: str
    #: Index labels of the input rows, in slice order (increasing along the normal).
    sorted_index: list[Any] = field(default_factory=list)
    n_slices: int = 0
    #: Mean distance between neighbouring slices along the normal (mm).
    spacing_mm: float = float("nan")
    #: (max - min) / mean of the neighbour distances; 0 for a perfect stack.
    spacing_spread: float = float("nan")
    tilt_deg: float = float("nan")
    #: Slice normal (x, y, z), patient coordinates.
    normal: tuple[float, float, float] | None = None
    #: (rows, columns) of every slice.
    matrix: tuple[int, int] | None = None
    #: Non-fatal observations (e.g. "gantry_tilt" when tilt is allowed, "duplicate_file").
    flags: list[str] = field(default_factory=list)


def slice_normal(orientation: np.ndarray) -> np.ndarray:
    """Unit normal of a (6,) ImageOrientationPatient."""
    normal = np.cross(orientation[:3], orientation[3:])
    length = float(np.linalg.norm(normal))
    return normal / length if length > 0 else normal


def _fail(reason: str, message: str, **kwargs: Any) -> GeometryReport:
    return GeometryReport(ok=False, reason=reason, message=message, **kwargs)


def check_geometry(records: pd.DataFrame, config: IngestConfig) -> GeometryReport:
    """Check the slices of ONE series; fatal problems come back as `reason`, nothing raises."""
    flags: list[str] = []
    if records["sop_instance_uid"].duplicated().any():
        # The same instance exported twice is harmless: keep one copy.
        flags.append(reasons.DUPLICATE_FILE)
        records = records.loc[~records["sop_instance_uid"].duplicated()]
    n = len(records)
    if n < 2:
        return _fail(reasons.TOO_FEW_SLICES, f"expected at least 2 slices, found {n}", n_slices=n)
    positions = records[list(IPP_COLUMNS)].to_numpy(dtype=float)
    orientations = records[list(IOP_COLUMNS)].to_numpy(dtype=float)
    missing = int(np.isnan(positions).any(axis=1).sum() + np.isnan(orientations).any(axis=1).sum())
    if missing:
        return _fail(reasons.MISSING_GEOMETRY,
                     f"expected position and orientation on every slice, {missing} lack them",
                     n_slices=n)
    if np.abs(orientations - orientations[0]).max() > _ORIENTATION_TOLERANCE:
        return _fail(reasons.MIXED_ORIENTATION, "expected one orientation, found several",
                     n_slices=n)
    matrices = sorted({(int(r), int(c)) for r, c in zip(records["rows"], records["columns"],
                                                         strict=True)})
    if len(matrices) > 1:
        return _fail(reasons.MIXED_MATRIX, f"expected one matrix size, found {matrices}",
                     n_slices=n)
    spacings = records[["pixel_spacing_row", "pixel_spacing_col"]].to_numpy(dtype=float)
    if np.isnan(spacings).any():
        return _fail(reasons.MISSING_GEOMETRY, "expected PixelSpacing on every slice",
                     n_slices=n)
    if np.abs(spacings - spacings[0]).max() > 1e-4:
        return _fail(reasons.MIXED_PIXEL_SPACING, "expected one pixel spacing, found several",
                     n_slices=n)

    normal = slice_normal(orientations[0])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    sorted_index = [records.index[i] for i in order]
    steps = np.diff(along[order])
    common: dict[str, Any] = {"sorted_index": sorted_index, "n_slices": n,
                              "normal": tuple(float(v) for v in normal), "matrix": matrices[0]}
    if (steps < _DUPLICATE_MM).any():
        count = int((steps < _DUPLICATE_MM).sum())
        return _fail(reasons.DUPLICATE_SLICE,
                     f"expected distinct slice positions, {count} position(s) repeat",
                     flags=flags, **common)
    median = float(np.median(steps))
    mean = float(steps.mean())
    spread = float((steps.max() - steps.min()) / mean)
    tilt = _tilt_degrees(positions[order], normal)
    common.update(spacing_mm=mean, spacing_spread=spread, tilt_deg=tilt)
    gaps = steps > _GAP_FACTOR * median
    if gaps.any():
        lost = int(np.round(steps[gaps] / median).sum() - gaps.sum())
        return _fail(reasons.MISSING_SLICE,
                     f"expected a slice every {median:.3f} mm, found {int(gaps.sum())} gap(s) "
                     f"(about {lost} missing slice(s))", flags=flags, **common)
    if spread > config.spacing_tolerance:
        return _fail(reasons.NONUNIFORM_SPACING,
                     f"expected slice spacing spread <= {config.spacing_tolerance:.3f}, "
                     f"found {spread:.3f} (spacings {steps.min():.3f}-{steps.max():.3f} mm)",
                     flags=flags, **common)
    if tilt > config.max_gantry_tilt_deg:
        message = (f"gantry tilt {tilt:.2f} deg exceeds {config.max_gantry_tilt_deg:.2f} deg")
        if config.reject_gantry_tilt:
            return _fail(reasons.GANTRY_TILT, message, flags=flags, **common)
        flags.append(reasons.GANTRY_TILT)
    return GeometryReport(ok=True, reason=None, message="ok", flags=flags, **common)


def _tilt_degrees(sorted_positions: np.ndarray, normal: np.ndarray) -> float:
    """Angle (deg) between the slice-position progression and the normal."""
    centred = sorted_positions - sorted_positions.mean(axis=0)
    # Principal direction of the positions: robust to jitter, unlike first-to-last.
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    direction = vt[0]
    cosine = abs(float(direction @ normal))
    return float(np.degrees(np.arccos(min(1.0, cosine))))
