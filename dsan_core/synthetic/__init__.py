"""Synthetic chest-CT cohort: phantoms, lesions, a cohort plan and a PACS-like DICOM export.

Arrays are (z, y, x); spacings are (x, y, z) in mm (SimpleITK order); values are HU.
Everything is seeded explicitly: the same SynthConfig gives byte-identical files.
The cohort's infection ratios follow `ratios` (the paper's bins and sampling groups);
the lesions' look, per diagnosis and extent, is described in `lesions`.
"""

from __future__ import annotations

from dsan_core.synthetic.cohort import CohortPlan, PatientPlan, StudyPlan, plan_cohort
from dsan_core.synthetic.generate import (
    GROUND_TRUTH_COLUMNS,
    LABEL_COLUMNS,
    BrokenInput,
    CohortSummary,
    generate_cohort,
    study_phantom,
    study_phantom_plan,
)
from dsan_core.synthetic.phantom import (
    Phantom,
    PhantomPlan,
    ellipsoid_phantom,
    make_phantom,
    plan_phantom,
)
from dsan_core.synthetic.ratios import (
    RATIO_BINS,
    expected_weights,
    ratio_bin,
    sampling_group,
)

__all__ = [
    "GROUND_TRUTH_COLUMNS",
    "LABEL_COLUMNS",
    "RATIO_BINS",
    "BrokenInput",
    "CohortPlan",
    "CohortSummary",
    "PatientPlan",
    "Phantom",
    "PhantomPlan",
    "StudyPlan",
    "ellipsoid_phantom",
    "expected_weights",
    "generate_cohort",
    "make_phantom",
    "plan_cohort",
    "plan_phantom",
    "ratio_bin",
    "sampling_group",
    "study_phantom",
    "study_phantom_plan",
]
