"""Synthetic chest-CT cohort: phantoms, lesions, a cohort plan and a PACS-like DICOM export.

Arrays are (z, y, x); spacings are (x, y, z) in mm (SimpleITK order); values are HU.
Everything is seeded explicitly: the same SynthConfig gives byte-identical files.
"""

from __future__ import annotations

from dsan_core.synthetic.cohort import CohortPlan, PatientPlan, StudyPlan, plan_cohort
from dsan_core.synthetic.generate import (
    GROUND_TRUTH_COLUMNS,
    LABEL_COLUMNS,
    BrokenInput,
    CohortSummary,
    generate_cohort,
    ratio_bin,
    sampling_group,
)
from dsan_core.synthetic.phantom import Phantom, ellipsoid_phantom, make_phantom

__all__ = [
    "GROUND_TRUTH_COLUMNS",
    "LABEL_COLUMNS",
    "BrokenInput",
    "CohortPlan",
    "CohortSummary",
    "PatientPlan",
    "Phantom",
    "StudyPlan",
    "ellipsoid_phantom",
    "generate_cohort",
    "make_phantom",
    "plan_cohort",
    "ratio_bin",
    "sampling_group",
]
