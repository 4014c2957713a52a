"""Calibration of P(COVID): expected calibration error and reliability-diagram data.

Bins are `n_bins` equal-width intervals of P(COVID): bin b holds b/n <= p < (b+1)/n,
the last one also p = 1. With n_b scans in bin b (N in all), mean predicted
probability conf_b and fraction of COVID scans acc_b,

    ECE = sum_b (n_b / N) * |acc_b - conf_b|      (empty bins contribute 0)

This is the calibration of the COVID probability itself (a reliability diagram of
P(COVID) against the observed COVID fraction), not the top-label confidence version.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from dsan_core.errors import InputError
from dsan_core.evaluation.metrics import as_binary_arrays

RELIABILITY_COLUMNS: tuple[str, ...] = ("prob_bin", "bin_low", "bin_high", "n_scans",
                                        "mean_predicted", "fraction_covid")


def probability_bins(probability: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index (int64, 0 .. n_bins - 1) of each probability; p = 1 goes to the last bin."""
    if n_bins < 1:
        raise InputError(f"expected at least one calibration bin, found {n_bins}")
    return np.minimum(np.floor(probability * n_bins), n_bins - 1).astype(np.int64)


def ece_from_bin_sums(count: np.ndarray, covid: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """ECE from per-bin (last axis) sums of scan weight, COVID weight and weighted
    P(COVID); NaN when the total weight is 0."""
    total = count.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(covid - predicted).sum(axis=-1) / np.where(total > 0, total, np.nan)


def expected_calibration_error(y_true: ArrayLike, probability: ArrayLike, n_bins: int = 10,
                               weights: np.ndarray | None = None) -> np.ndarray:
    """ECE of P(COVID) (module docstring); y_true 1 = COVID.

    `weights` (n_scans,) or (n_replicates, n_scans) are scan multiplicities, e.g. from
    a bootstrap; the result then has shape weights.shape[:-1]. Without weights it is a
    0-d array (use float()). NaN when the total weight is 0.
    """
    y, p = as_binary_arrays(y_true, probability)
    w = np.ones_like(p) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape[-1:] != p.shape:
        raise InputError(f"expected weights with last axis {p.shape[0]}, found {w.shape}")
    one_hot = np.zeros((p.size, n_bins))
    one_hot[np.arange(p.size), probability_bins(p, n_bins)] = 1.0
    return ece_from_bin_sums(w @ one_hot, w @ (one_hot * y[:, None]),
                             w @ (one_hot * p[:, None]))


def reliability_table(y_true: ArrayLike, probability: ArrayLike,
                      n_bins: int = 10) -> pd.DataFrame:
    """One row per bin: prob_bin, bin_low, bin_high, n_scans, mean_predicted and
    fraction_covid (both NaN in an empty bin)."""
    y, p = as_binary_arrays(y_true, probability)
    index = probability_bins(p, n_bins)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(index, weights=p, minlength=n_bins) / count
        fraction = np.bincount(index, weights=y.astype(np.float64), minlength=n_bins) / count
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame({
        "prob_bin": np.arange(n_bins, dtype=np.int64),
        "bin_low": edges[:-1],
        "bin_high": edges[1:],
        "n_scans": count.astype(np.int64),
        "mean_predicted": mean_p,
        "fraction_covid": fraction,
    })
