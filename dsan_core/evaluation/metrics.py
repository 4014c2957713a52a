"""Classification metrics of one model on one set of scans (METHOD.md "Evaluation").

COVID is the positive class (y = 1), `probability` is P(COVID), and a scan is called
COVID when probability >= threshold (0.5 in the paper). A metric that is undefined on
the scans given (AUC with one class, sensitivity without COVID scans, specificity
without CAP scans) is NaN, never an error: a Table III bin can hold one class only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from dsan_core.config import DECISION_THRESHOLD
from dsan_core.errors import InputError
from dsan_core.groups import LABEL_COVID

AUC = "auc"
ACCURACY = "accuracy"
SENSITIVITY = "sensitivity"
SPECIFICITY = "specificity"
F1 = "f1"
ECE = "ece"
#: The paper's five metrics, in the order of its tables.
CLASSIFICATION_METRICS: tuple[str, ...] = (AUC, ACCURACY, SENSITIVITY, SPECIFICITY, F1)
#: Every metric of the `metrics` table (the expected calibration error last).
METRICS: tuple[str, ...] = (*CLASSIFICATION_METRICS, ECE)
METRIC_NAMES: dict[str, str] = {AUC: "AUC", ACCURACY: "Accuracy", SENSITIVITY: "Sensitivity",
                                SPECIFICITY: "Specificity", F1: "F1", ECE: "ECE"}


def as_binary_arrays(y_true: ArrayLike, probability: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(y as int64 0/1, probability as float64), both 1-D and of one length."""
    y = np.asarray(y_true)
    p = np.asarray(probability, dtype=np.float64)
    if y.ndim != 1 or y.shape != p.shape:
        raise InputError(f"expected y_true and probability of one 1-D shape, found {y.shape} "
                         f"and {p.shape}")
    if not np.isin(y, (0, 1)).all():
        found = sorted(set(y.tolist()))
        raise InputError(f"expected y_true in {{0, 1}} (1 = COVID), found {found}")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise InputError("expected probabilities in [0, 1], found values outside")
    return y.astype(np.int64), p


def binary_metrics(y_true: ArrayLike, probability: ArrayLike,
                   threshold: float | ArrayLike = DECISION_THRESHOLD) -> dict[str, float]:
    """AUC, accuracy, sensitivity, specificity and F1 (scikit-learn) of P(COVID).

    y_true: 1 = COVID, 0 = CAP. Thresholded metrics call a scan COVID when
    probability >= threshold (one number, or one per scan: nested thresholds).
    Undefined metrics are NaN (see the module docstring); F1 is NaN only when there is
    neither a COVID scan nor a COVID call.
    """
    from sklearn.metrics import accuracy_score, f1_score, recall_score, roc_auc_score

    y, p = as_binary_arrays(y_true, probability)
    if y.size == 0:
        return {name: float("nan") for name in CLASSIFICATION_METRICS}
    called = (p >= np.asarray(threshold, dtype=np.float64)).astype(np.int64)
    both_classes = 0 < int(y.sum()) < y.size
    return {
        AUC: float(roc_auc_score(y, p)) if both_classes else float("nan"),
        ACCURACY: float(accuracy_score(y, called)),
        SENSITIVITY: float(recall_score(y, called, pos_label=1, zero_division=np.nan)),
        SPECIFICITY: float(recall_score(y, called, pos_label=0, zero_division=np.nan)),
        F1: float(f1_score(y, called, pos_label=1, zero_division=np.nan)),
    }


def scan_auc(probability: pd.Series, labels: pd.Series) -> float:
    """AUC of P(COVID) per scan (`probability`, indexed by scan id) against the scans'
    labels (`labels`: 'COVID' | 'CAP', indexed by scan id); `binary_metrics`' AUC, NaN
    without scans or without both classes."""
    if probability.empty:
        return float("nan")
    missing = probability.index.difference(labels.index)
    if len(missing):
        raise InputError("expected a label for every scan with a probability, found none",
                         scan=str(missing[0]))
    y = (labels.loc[probability.index] == LABEL_COVID).to_numpy()
    return binary_metrics(y, probability.to_numpy())[AUC]


def pooled_auc(predictions: pd.DataFrame, labels: pd.Series) -> dict[str, float]:
    """AUC per branch of prediction rows (scan_id, branch, probability), pooled over
    their folds; on the out-of-fold ('val') rows this is the paper's TV AUC."""
    return {str(branch): scan_auc(rows.set_index("scan_id")["probability"], labels)
            for branch, rows in predictions.groupby("branch", sort=True)}
