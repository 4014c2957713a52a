"""Patient-level bootstrap: replicate weights and vectorised weighted metrics.

A replicate draws PATIENTS with replacement (as many as there are); every scan of a
patient drawn k times gets weight k, so a patient's scans always stay together
(several scans of one patient are not independent). A metric on a replicate is the
metric on the weighted scans, which equals the metric on the scans repeated k times;
all replicates are computed at once as (n_replicates, n_scans) weight matrices.
Intervals are percentile intervals over the replicates where the metric is defined.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from dsan_core.config import DECISION_THRESHOLD
from dsan_core.errors import InputError
from dsan_core.evaluation.calibration import ece_from_bin_sums, probability_bins
from dsan_core.evaluation.metrics import (
    ACCURACY,
    AUC,
    ECE,
    F1,
    SENSITIVITY,
    SPECIFICITY,
    as_binary_arrays,
)


def patient_bootstrap_weights(patient_ids: ArrayLike, n_replicates: int,
                              rng: np.random.Generator) -> np.ndarray:
    """(n_replicates, n_scans) int64 weights: how often each scan's patient was drawn.

    `patient_ids` has one (pseudonymous) patient id per scan.
    """
    ids = np.asarray(patient_ids)
    if ids.ndim != 1:
        raise InputError(f"expected one patient id per scan (1-D), found shape {ids.shape}")
    patients, scan_patient = np.unique(ids, return_inverse=True)
    n = patients.size
    if n == 0:
        return np.zeros((n_replicates, 0), dtype=np.int64)
    draws = rng.integers(0, n, size=(n_replicates, n))
    flat = (draws + n * np.arange(n_replicates)[:, None]).ravel()
    counts = np.bincount(flat, minlength=n_replicates * n).reshape(n_replicates, n)
    return counts[:, scan_patient]


def _score_groups(p: np.ndarray, y: np.ndarray,
                  w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct scores ascending (G,), COVID weight (B, G), CAP weight (B, G)) per score."""
    order = np.argsort(p, kind="stable")
    p_sorted, y_sorted, w_sorted = p[order], y[order], w[:, order]
    starts = np.flatnonzero(np.r_[True, p_sorted[1:] != p_sorted[:-1]])
    if starts.size == 0:
        empty = np.zeros((w.shape[0], 0))
        return p_sorted, empty, empty
    covid = np.add.reduceat(w_sorted * y_sorted, starts, axis=1)
    cap = np.add.reduceat(w_sorted * (1 - y_sorted), starts, axis=1)
    return p_sorted[starts], covid, cap


def _auc(covid: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC from per-score weights in ascending score order (ties count 1/2)."""
    below = np.cumsum(cap, axis=1) - cap
    pairs = (covid * (below + 0.5 * cap)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pairs / (covid.sum(axis=1) * cap.sum(axis=1))


def _ece(scores: np.ndarray, covid: np.ndarray, cap: np.ndarray, n_bins: int) -> np.ndarray:
    count = covid + cap
    if scores.size == 0:
        return np.full(covid.shape[0], np.nan)
    # Scores are ascending, so each calibration bin is a run of consecutive columns.
    bins = probability_bins(scores, n_bins)
    starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])
    return ece_from_bin_sums(np.add.reduceat(count, starts, axis=1),
                             np.add.reduceat(covid, starts, axis=1),
                             np.add.reduceat(count * scores, starts, axis=1))


def weighted_metrics(y_true: ArrayLike, probability: ArrayLike, weights: np.ndarray,
                     threshold: float | ArrayLike = DECISION_THRESHOLD,
                     ece_bins: int = 10) -> dict[str, np.ndarray]:
    """Every metric (`metrics.METRICS`) per weight row; weights (n_replicates, n_scans).

    `threshold`: one number, or one per scan (nested thresholds). With unit weights
    these equal `binary_metrics` and `expected_calibration_error`; undefined values are
    NaN as there. AUC and ECE come from the weights summed per distinct score, so one
    sort serves every replicate.
    """
    y, p = as_binary_arrays(y_true, probability)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if w.shape[1] != p.size:
        raise InputError(f"expected weights with {p.size} columns, found {w.shape}")
    t = np.asarray(threshold, dtype=np.float64)
    if t.ndim and t.shape != p.shape:
        raise InputError(f"expected one threshold or one per scan ({p.size}), found {t.shape}")
    scores, covid, cap = _score_groups(p, y, w)
    called = (p >= t).astype(np.float64)
    positive = y.astype(np.float64)
    tp, fn = w @ (positive * called), w @ (positive * (1.0 - called))
    fp, tn = w @ ((1.0 - positive) * called), w @ ((1.0 - positive) * (1.0 - called))
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            AUC: _auc(covid, cap),
            ACCURACY: (tp + tn) / (tp + tn + fp + fn),
            SENSITIVITY: tp / (tp + fn),
            SPECIFICITY: tn / (tn + fp),
            F1: 2 * tp / (2 * tp + fp + fn),
            ECE: _ece(scores, covid, cap, ece_bins),
        }


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """(low, high) percentile interval over the finite replicates; NaN when none is."""
    values = np.asarray(replicates, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)
