"""DeLong's test for paired AUCs, with the fast algorithm of Sun & Xu (2014).

DeLong, DeLong & Clarke-Pearson (1988) estimate the covariance of k AUCs measured on
the same m positive (COVID) and n negative (CAP) scans from the structural components

    V10_r(i) = mean_j psi(X_ri, Y_rj)     V01_r(j) = mean_i psi(X_ri, Y_rj)
    psi(x, y) = 1 if x > y, 1/2 if x = y, 0 otherwise

as S = S10 / m + S01 / n, with S10, S01 the (k, k) sample covariances (ddof = 1) of
V10 and V01. Sun & Xu (IEEE SPL 21(11), 2014) obtain every component from midranks
in O((m + n) log(m + n)) instead of O(m n): with Tz the midranks of model r's scores
over all scans, Tx over the positives only and Ty over the negatives only,

    AUC_r = (sum_i Tz_i - m (m + 1) / 2) / (m n)       (i over positives)
    V10_r = (Tz_pos - Tx) / n          V01_r = 1 - (Tz_neg - Ty) / m

The test of AUC_a = AUC_b uses z = (AUC_a - AUC_b) / sqrt(S_aa + S_bb - 2 S_ab) and a
two-sided normal p-value, as pROC's `roc.test(..., method = "delong", paired = TRUE)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from dsan_core.errors import InputError


@dataclass(frozen=True)
class DeLongTest:
    """Paired comparison of two AUCs on the same scans; difference = auc_a - auc_b."""

    auc_a: float
    auc_b: float
    difference: float
    variance: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float


def _split(y_true: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if y.ndim != 1 or s.shape[1] != y.size:
        raise InputError(f"expected scores (k, {y.size}) for {y.size} labels, found {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise InputError("expected labels in {0, 1} (1 = COVID)")
    positive = y == 1
    if positive.all() or not positive.any():
        raise InputError(f"DeLong needs COVID and CAP scans, found {int(positive.sum())} "
                         f"COVID of {y.size}")
    return s[:, positive], s[:, ~positive]


def structural_components(y_true: ArrayLike,
                          scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(aucs (k,), V10 (k, m), V01 (k, n)) by midranks; scores (k, n_scans) or (n_scans,)."""
    from scipy.stats import rankdata

    x, y = _split(y_true, scores)
    m, n = x.shape[1], y.shape[1]
    tz = rankdata(np.concatenate([x, y], axis=1), axis=1)
    tx = rankdata(x, axis=1)
    ty = rankdata(y, axis=1)
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return aucs, v10, v01


def delong_covariance(y_true: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """(aucs (k,), covariance (k, k)) of k models' AUCs on the same scans."""
    aucs, v10, v01 = structural_components(y_true, scores)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((aucs.size, aucs.size))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((aucs.size, aucs.size))
    return aucs, s10 / m + s01 / n


def delong_test(y_true: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike,
                level: float = 0.95) -> DeLongTest:
    """Two-sided DeLong test of AUC_a = AUC_b (paired: the same scans, in one order).

    With zero variance (e.g. identical scores) z is 0 and p is 1 when the AUCs are
    equal, NaN otherwise.
    """
    from scipy.stats import norm

    aucs, cov = delong_covariance(y_true, np.vstack([scores_a, scores_b]))
    difference = float(aucs[0] - aucs[1])
    variance = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    if variance <= 1e-15:
        z = 0.0 if difference == 0.0 else float("nan")
        p_value = 1.0 if difference == 0.0 else float("nan")
        half = 0.0
    else:
        z = difference / np.sqrt(variance)
        p_value = float(2.0 * norm.sf(abs(z)))
        half = float(norm.ppf(0.5 + level / 2.0) * np.sqrt(variance))
    return DeLongTest(auc_a=float(aucs[0]), auc_b=float(aucs[1]), difference=difference,
                      variance=variance, z=float(z), p_value=p_value,
                      ci_low=difference - half, ci_high=difference + half)
