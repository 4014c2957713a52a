"""Write one CT study (localizer, thin axial, thick axial) from a phantom.

Volumes are (z, y, x) HU, slice 0 inferior. Series numbers and folders: 1 localizer
(SE0001), 2 thin axial (SE0002), 3 thick axial (SE0003). Studies whose plan role is
"truncated_file" or "missing_slice" get that defect in their thin series.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsan_core.synthetic.cohort import PatientPlan, StudyPlan
from dsan_core.synthetic.dicom_export import (
    SeriesSpec,
    ct_series_template,
    ds_str,
    stored_pixels,
    truncate_file,
    write_axial_series,
)
from dsan_core.synthetic.masks import MaskGeometry
from dsan_core.synthetic.phantom import HU_MAX, HU_MIN, Phantom
from dsan_core.synthetic.sites import SiteProfile

LOCALIZER = SeriesSpec(1, "TOPOGRAM", ("ORIGINAL", "PRIMARY", "LOCALIZER"), (40.0, 400.0))
THIN = SeriesSpec(2, "CHEST 1.25mm LUNG", ("ORIGINAL", "PRIMARY", "AXIAL"), (-600.0, 1500.0))
THICK = SeriesSpec(3, "CHEST 5mm STANDARD", ("ORIGINAL", "PRIMARY", "AXIAL"), (40.0, 400.0))
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
THICK_MM = 5.0


@dataclass(frozen=True)
class StudyGeometry:
    """Matrix, slice count, pixel spacing and thin slice spacing (mm) of every study."""

    matrix: int
    n_slices: int
    pixel_mm: float
    slice_mm: float

    def corner(self) -> tuple[float, float]:
        """(x, y) mm of the first pixel's centre, for a volume centred on the isocentre."""
        c = -(self.matrix - 1) / 2 * self.pixel_mm
        return float(ds_str(c)), float(ds_str(c))

    def z_start(self) -> float:
        return float(ds_str(-(self.n_slices - 1) / 2 * self.slice_mm))


@dataclass(frozen=True)
class WrittenStudy:
    files: int
    thin_series_uid: str
    mask_geometry: MaskGeometry
    #: The broken file or folder when the study carries a deliberate defect.
    broken: Path | None


def _thin_spec(slice_mm: float) -> SeriesSpec:
    return SeriesSpec(THIN.number, f"CHEST {ds_str(slice_mm)}mm LUNG", THIN.image_type, THIN.window)


def write_ct_study(
    folder: Path,
    patient: PatientPlan,
    study: StudyPlan,
    site: SiteProfile,
    phantom: Phantom,
    geometry: StudyGeometry,
    *,
    include_localizer: bool,
    include_thick: bool,
) -> WrittenStudy:
    """Write the study's series under `folder` (the S#### folder)."""
    g = geometry
    x0, y0 = g.corner()
    z0 = g.z_start()
    hu = phantom.hu
    n = hu.shape[0]
    files = 0
    pixel = (g.pixel_mm, g.pixel_mm)

    thin = ct_series_template(patient, study, site, _thin_spec(g.slice_mm), rows=g.matrix,
                              columns=g.matrix, pixel_spacing=pixel, orientation=AXIAL,
                              slice_thickness=g.slice_mm)
    positions = [(x0, y0, float(ds_str(z0 + k * g.slice_mm))) for k in range(n)]
    skip = frozenset({n // 2}) if study.role == "missing_slice" else frozenset()
    thin_folder = folder / f"SE{THIN.number:04d}"
    paths = write_axial_series(thin_folder, thin, study, stored_pixels(hu, site), positions,
                               skip=skip)
    files += len(paths)
    broken: Path | None = None
    if study.role == "truncated_file":
        broken = paths[len(paths) // 2]
        truncate_file(broken)
    elif study.role == "missing_slice":
        broken = thin_folder

    if include_thick:
        k = max(2, round(THICK_MM / g.slice_mm))
        m = n // k
        groups = hu[: m * k].astype(np.float32).reshape(m, k, *hu.shape[1:]).mean(axis=1)
        thick_hu = np.clip(np.rint(groups), HU_MIN, HU_MAX).astype(np.int16)
        spec = SeriesSpec(THICK.number, f"CHEST {ds_str(k * g.slice_mm)}mm STANDARD",
                          THICK.image_type, THICK.window)
        ds = ct_series_template(patient, study, site, spec, rows=g.matrix, columns=g.matrix,
                                pixel_spacing=pixel, orientation=AXIAL,
                                slice_thickness=k * g.slice_mm)
        thick_pos = [(x0, y0, float(ds_str(z0 + (j * k + (k - 1) / 2) * g.slice_mm)))
                     for j in range(m)]
        files += len(write_axial_series(folder / f"SE{THICK.number:04d}", ds, study,
                                        stored_pixels(thick_hu, site), thick_pos))

    if include_localizer:
        # A coronal projection: rows run from head (top) to feet, columns along +x.
        projection = hu.astype(np.float32).mean(axis=1)[::-1]
        scout = np.clip(np.rint(projection), HU_MIN, HU_MAX).astype(np.int16)[None]
        ds = ct_series_template(patient, study, site, LOCALIZER, rows=n, columns=g.matrix,
                                pixel_spacing=(g.slice_mm, g.pixel_mm), orientation=CORONAL,
                                slice_thickness=None)
        top = (x0, 0.0, positions[-1][2])
        files += len(write_axial_series(folder / f"SE{LOCALIZER.number:04d}", ds, study,
                                        stored_pixels(scout, site), [top]))

    spacing = (float(ds_str(g.pixel_mm)), float(ds_str(g.pixel_mm)), float(ds_str(g.slice_mm)))
    mask_geometry = MaskGeometry(origin=(x0, y0, z0), spacing=spacing)
    return WrittenStudy(files, study.series_uid(THIN.number), mask_geometry, broken)
