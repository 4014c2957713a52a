"""Synthetic chest-CT cohort: phantoms, lesions, a cohort plan and a PACS-like DICOM export.

Arrays are (z, y, x); spacings are (x, y, z) in mm (SimpleITK order); values are HU.
Everything is seeded explicitly: the same SynthConfig gives byte-identical files.
The cohort is built so that untrained global features do not solve the task: the
infection ratios follow `ratios` (the paper's bins and sampling groups in one part,
both classes alike in the other; inside a bin never a hint of the class); lesions
look the same for both diagnoses at a given extent and differ in where and how they
are arranged (`lesions`); label-independent dense findings (`distractors`) and
per-site noise, kernel and HU offset (`scanner`, `sites`, dealt independently of the
label in the earlier set by `cohort`) make global brightness unreliable.
`benchmarks/cohort_difficulty.py` measures it.
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
