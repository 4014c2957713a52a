"""The paper's published numbers (Ouyang et al., IEEE TMI 2020), as restated in
../shared/METHOD.md: the headline results (Table II), the scan counts per analysis
bin (Table III's counts) and the ensemble weights. Real data; a synthetic cohort is
not expected to reach them. Keys are branch names and `dsan_core.groups` names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from dsan_core.config import PAPER_W_EXTREME, PAPER_W_MIDDLE
from dsan_core.groups import BIN_HIGH, BIN_LOW, BIN_MID, LABEL_CAP, LABEL_COVID


@dataclass(frozen=True)
class PaperNumbers:
    """table_ii[model][column]: columns tv_auc (5 validation folds pooled) and the test
    set's mean over the 5 fold models: auc, accuracy, sensitivity, specificity, f1.
    scan_counts[(set, label)][bin]: set 'tv' | 'test'. ensemble_weights: (w_extreme,
    w_middle)."""

    table_ii: Mapping[str, Mapping[str, float]]
    scan_counts: Mapping[tuple[str, str], Mapping[str, int]]
    ensemble_weights: tuple[float, float]


def _table_ii_row(tv_auc: float, auc: float, accuracy: float, sensitivity: float,
                  specificity: float, f1: float) -> Mapping[str, float]:
    return MappingProxyType({"tv_auc": tv_auc, "auc": auc, "accuracy": accuracy,
                             "sensitivity": sensitivity, "specificity": specificity, "f1": f1})


def _counts(low: int, mid: int, high: int) -> Mapping[str, int]:
    return MappingProxyType({BIN_LOW: low, BIN_MID: mid, BIN_HIGH: high})


PAPER = PaperNumbers(
    table_ii=MappingProxyType({
        "rn34_us": _table_ii_row(0.984, 0.934, 0.859, 0.856, 0.870, 0.798),
        "att_us": _table_ii_row(0.986, 0.948, 0.879, 0.872, 0.907, 0.825),
        "att_ss": _table_ii_row(0.987, 0.938, 0.869, 0.868, 0.876, 0.811),
        "att_ds": _table_ii_row(0.988, 0.944, 0.875, 0.869, 0.901, 0.820),
    }),
    scan_counts=MappingProxyType({
        ("tv", LABEL_COVID): _counts(151, 318, 625),
        ("tv", LABEL_CAP): _counts(838, 183, 71),
        ("test", LABEL_COVID): _counts(363, 718, 1214),
        ("test", LABEL_CAP): _counts(436, 41, 24),
    }),
    ensemble_weights=(PAPER_W_EXTREME, PAPER_W_MIDDLE),
)
