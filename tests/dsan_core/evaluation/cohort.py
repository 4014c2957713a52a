"""A tiny, hand-checkable cohort: 8 TV scans (2 folds) and 4 test scans, with the
groups, splits and predictions tables of the evaluation contract."""

from __future__ import annotations

import pandas as pd

from dsan_core.config import GroupsConfig
from dsan_core.groups import assign_groups

# scan, patient, label, infection ratio, fold (None = test)
SCANS = [
    ("t0", "P0", "COVID", 0.100, 0), ("t1", "P0", "COVID", 0.010, 0),
    ("t2", "P1", "CAP", 0.000, 0), ("t3", "P2", "CAP", 0.002, 0),
    ("t4", "P3", "COVID", 0.050, 1), ("t5", "P3", "CAP", 0.000, 1),
    ("t6", "P4", "COVID", 0.003, 1), ("t7", "P5", "CAP", 0.020, 1),
    ("x0", "Q0", "COVID", 0.100, None), ("x1", "Q0", "COVID", 0.010, None),
    ("x2", "Q1", "CAP", 0.000, None), ("x3", "Q2", "CAP", 0.000, None),
]
TV = [s[0] for s in SCANS if s[4] is not None]
TEST = [s[0] for s in SCANS if s[4] is None]

# Out-of-fold P(COVID) per branch for t0..t7.
VAL = {
    "rn34_us": [0.9, 0.4, 0.3, 0.6, 0.8, 0.2, 0.55, 0.45],
    "att_us": [0.95, 0.6, 0.1, 0.4, 0.9, 0.3, 0.7, 0.2],
}
# P(COVID) for x0..x3 per branch and fold model.
TEST_P = {
    ("rn34_us", 0): [0.8, 0.3, 0.4, 0.2], ("rn34_us", 1): [0.7, 0.6, 0.5, 0.1],
    ("att_us", 0): [0.9, 0.6, 0.2, 0.3], ("att_us", 1): [0.95, 0.7, 0.4, 0.1],
}


def groups() -> pd.DataFrame:
    raw = pd.DataFrame({"scan_id": [s[0] for s in SCANS], "label": [s[2] for s in SCANS],
                        "infection_ratio": [s[3] for s in SCANS]})
    return assign_groups(raw, GroupsConfig())


def splits() -> pd.DataFrame:
    return pd.DataFrame({
        "scan_id": [s[0] for s in SCANS], "patient_id": [s[1] for s in SCANS],
        "set": ["tv" if s[4] is not None else "test" for s in SCANS],
        "fold": pd.array([s[4] for s in SCANS], dtype="Int64"),
    })


def predictions() -> pd.DataFrame:
    folds = {s[0]: s[4] for s in SCANS}
    rows = []
    for branch, probabilities in VAL.items():
        for scan, p in zip(TV, probabilities, strict=True):
            rows.append((scan, folds[scan], branch, "val", p, f"{branch}-f{folds[scan]}"))
    for (branch, fold), probabilities in TEST_P.items():
        for scan, p in zip(TEST, probabilities, strict=True):
            rows.append((scan, fold, branch, "test", p, f"{branch}-f{fold}"))
    return pd.DataFrame(rows, columns=["scan_id", "fold", "branch", "set", "probability",
                                       "model_key"])
