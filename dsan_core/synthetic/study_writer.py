"""Write one CT study (localizer, thin axial, thick axial) from a phantom, slab by slab.

Volumes are (z, y, x) HU, slice 0 inferior. Series numbers and folders: 1 localizer
(SE0001), 2 thin axial (SE0002), 3 thick axial (SE0003). Studies whose plan role is
"truncated_file" or "missing_slice" get that defect in their thin series.

`CtStudyWriter` takes the volume a slab at a time and writes every thin slice at
once, so a paper-sized study (512 x 512 x 300+) never sits in memory as a whole: it
keeps only the thick slices' running sums and one localizer row per slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from dsan_core.config import CT_WINDOW_LEVEL, CT_WINDOW_WIDTH
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
from dsan_core.synthetic.phantom import HU_MAX, HU_MIN
from dsan_core.synthetic.sites import SiteProfile

LOCALIZER = SeriesSpec(1, "TOPOGRAM", ("ORIGINAL", "PRIMARY", "LOCALIZER"), (40.0, 400.0))
#: The thin series is written with the method's lung window (DICOM: centre, width).
THIN = SeriesSpec(2, "CHEST 1.25mm LUNG", ("ORIGINAL", "PRIMARY", "AXIAL"),
                  (CT_WINDOW_LEVEL, CT_WINDOW_WIDTH))
THICK = SeriesSpec(3, "CHEST 5mm STANDARD", ("ORIGINAL", "PRIMARY", "AXIAL"), (40.0, 400.0))
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
THICK_MM = 5.0


@dataclass(frozen=True)
class StudyGeometry:
    """Matrix, slice count, pixel spacing and thin slice spacing (mm) of a study."""

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

    def mask_geometry(self) -> MaskGeometry:
        x0, y0 = self.corner()
        spacing = (float(ds_str(self.pixel_mm)), float(ds_str(self.pixel_mm)),
                   float(ds_str(self.slice_mm)))
        return MaskGeometry(origin=(x0, y0, self.z_start()), spacing=spacing)


@dataclass(frozen=True)
class WrittenStudy:
    files: int
    thin_series_uid: str
    mask_geometry: MaskGeometry
    #: The broken file or folder when the study carries a deliberate defect.
    broken: Path | None


def _thin_spec(slice_mm: float) -> SeriesSpec:
    return SeriesSpec(THIN.number, f"CHEST {ds_str(slice_mm)}mm LUNG", THIN.image_type, THIN.window)


class CtStudyWriter:
    """Writes the series of one study under `folder` (the S#### folder) from HU slabs."""

    def __init__(self, folder: Path, patient: PatientPlan, study: StudyPlan, site: SiteProfile,
                 geometry: StudyGeometry, *, include_localizer: bool, include_thick: bool
                 ) -> None:
        g = geometry
        self.folder, self.patient, self.study, self.site, self.geometry = (
            folder, patient, study, site, geometry)
        self.include_localizer = include_localizer
        x0, y0 = g.corner()
        z0 = g.z_start()
        self.positions = [(x0, y0, float(ds_str(z0 + k * g.slice_mm)))
                          for k in range(g.n_slices)]
        pixel = (g.pixel_mm, g.pixel_mm)
        self.thin = ct_series_template(patient, study, site, _thin_spec(g.slice_mm),
                                       rows=g.matrix, columns=g.matrix, pixel_spacing=pixel,
                                       orientation=AXIAL, slice_thickness=g.slice_mm)
        self.skip = (frozenset({g.n_slices // 2}) if study.role == "missing_slice"
                     else frozenset())
        self.thin_paths: list[Path] = []
        self.files = 0
        self.thick_k = max(2, round(THICK_MM / g.slice_mm)) if include_thick else 0
        self.thick = None
        if include_thick:
            k = self.thick_k
            spec = SeriesSpec(THICK.number, f"CHEST {ds_str(k * g.slice_mm)}mm STANDARD",
                              THICK.image_type, THICK.window)
            self.thick = ct_series_template(patient, study, site, spec, rows=g.matrix,
                                            columns=g.matrix, pixel_spacing=pixel,
                                            orientation=AXIAL, slice_thickness=k * g.slice_mm)
        self.thick_sum: NDArray[np.float32] | None = None
        self.thick_count = 0
        self.next_slice = 0
        self.localizer_rows: list[NDArray[np.float32]] = []

    def add(self, hu: NDArray[np.int16]) -> None:
        """Write the next slab (slices continue where the previous slab stopped)."""
        first = self.next_slice
        positions = self.positions[first:first + hu.shape[0]]
        paths = write_axial_series(self.folder / f"SE{THIN.number:04d}", self.thin, self.study,
                                   stored_pixels(hu, self.site), positions, skip=self.skip,
                                   first=first)
        self.thin_paths += paths
        self.files += len(paths)
        if self.include_localizer:
            self.localizer_rows += list(hu.astype(np.float32).mean(axis=1))
        if self.thick is not None:
            for k in range(hu.shape[0]):
                self._add_to_thick(first + k, hu[k])
        self.next_slice += hu.shape[0]

    def _add_to_thick(self, index: int, hu: NDArray[np.int16]) -> None:
        k = self.thick_k
        j = index // k
        if self.thick is None or j >= self.geometry.n_slices // k:
            return  # the last incomplete group makes no thick slice
        plane = hu.astype(np.float32)
        self.thick_sum = plane if self.thick_sum is None else self.thick_sum + plane
        self.thick_count += 1
        if self.thick_count < k:
            return
        mean = np.clip(np.rint(self.thick_sum / k), HU_MIN, HU_MAX).astype(np.int16)
        g = self.geometry
        x0, y0 = g.corner()
        position = (x0, y0, float(ds_str(g.z_start() + (j * k + (k - 1) / 2) * g.slice_mm)))
        self.files += len(write_axial_series(self.folder / f"SE{THICK.number:04d}", self.thick,
                                             self.study, stored_pixels(mean[None], self.site),
                                             [position], first=j))
        self.thick_sum, self.thick_count = None, 0

    def finish(self) -> WrittenStudy:
        """Write the localizer, apply the study's defect and say what was written."""
        g = self.geometry
        if self.include_localizer:
            # A coronal projection: rows run from head (top) to feet, columns along +x.
            projection = np.stack(self.localizer_rows)[::-1]
            scout = np.clip(np.rint(projection), HU_MIN, HU_MAX).astype(np.int16)[None]
            ds = ct_series_template(self.patient, self.study, self.site, LOCALIZER,
                                    rows=g.n_slices, columns=g.matrix,
                                    pixel_spacing=(g.slice_mm, g.pixel_mm), orientation=CORONAL,
                                    slice_thickness=None)
            x0, _ = g.corner()
            top = (x0, 0.0, self.positions[-1][2])
            self.files += len(write_axial_series(self.folder / f"SE{LOCALIZER.number:04d}", ds,
                                                 self.study, stored_pixels(scout, self.site),
                                                 [top]))
        broken: Path | None = None
        if self.study.role == "truncated_file":
            broken = self.thin_paths[len(self.thin_paths) // 2]
            truncate_file(broken)
        elif self.study.role == "missing_slice":
            broken = self.folder / f"SE{THIN.number:04d}"
        return WrittenStudy(self.files, self.study.series_uid(THIN.number),
                            g.mask_geometry(), broken)
