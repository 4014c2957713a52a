"""The threshold of the thresholded metrics (accuracy, sensitivity, specificity, F1).

A scan is called COVID when P(COVID) >= t. Rule 'youden' (`EvaluationConfig.threshold_rule`,
the default) chooses t on TV out-of-fold predictions, never on the rows it scores:

    t maximises Youden's J = sensitivity + specificity - 1 (the same t maximises
    balanced accuracy), over the midpoints between consecutive distinct scores; among
    equal J (compared exactly, as integer counts) the candidate nearest the paper's
    0.5 wins, then the lower one.

    TV metrics      nested: fold k's val rows at the t chosen on the other folds' val
                    rows of the same model (the `thresholds` row with fold k)
    test metrics    every fold model, and the fold-averaged model, at the t chosen on all
                    of the model's TV val rows (the row with fold null); the shipped
                    model takes `att_ds`'s (its weights are `att_ds`'s)

Rule 'fixed': `EvaluationConfig.threshold` (the paper's 0.5) everywhere. Where J is
undefined (one class, or a single distinct score, on the rows t would be chosen on)
the fixed threshold is used and the row's rule says so.

The `thresholds` table: model, fold (null: chosen on all TV; k: chosen on the folds
other than k), threshold, rule ('youden' | 'fixed' | 'fixed (J undefined)'), n_scans
(the val scans t was chosen on; 0 for a fixed t).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from dsan_core.branches import ATT_DS
from dsan_core.config import DECISION_THRESHOLD, EvaluationConfig
from dsan_core.evaluation.metrics import as_binary_arrays
from dsan_core.prediction_table import (
    SET_VAL,
    SHIPPED,
    labelled_predictions,
    ordered_models,
)

RULE_YOUDEN = "youden"
RULE_FIXED = "fixed"
RULE_UNDEFINED = "fixed (J undefined)"
THRESHOLD_COLUMNS: tuple[str, ...] = ("model", "fold", "threshold", "rule", "n_scans")
#: Models scored with another model's thresholds.
THRESHOLD_SOURCE: dict[str, str] = {SHIPPED: ATT_DS}


def youden_threshold(y_true: ArrayLike, probability: ArrayLike) -> float | None:
    """The threshold of maximal Youden's J (module docstring); None when J is undefined."""
    y, p = as_binary_arrays(y_true, probability)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    scores = np.unique(p)
    if n_pos == 0 or n_neg == 0 or scores.size < 2:
        return None
    cuts = (scores[:-1] + scores[1:]) / 2.0
    tp = n_pos - np.searchsorted(np.sort(p[y == 1]), cuts, side="left")
    fp = n_neg - np.searchsorted(np.sort(p[y == 0]), cuts, side="left")
    # J * n_pos * n_neg, an exact integer: equal J compare equal.
    j = tp.astype(np.int64) * n_neg - fp.astype(np.int64) * n_pos
    best = cuts[j == j.max()]
    order = np.lexsort((best, np.abs(best - DECISION_THRESHOLD)))
    return float(best[order[0]])


def _record(model: str, fold: int | None, rows: pd.DataFrame,
            config: EvaluationConfig) -> dict[str, object]:
    if config.threshold_rule == RULE_FIXED:
        return {"model": model, "fold": fold, "threshold": config.threshold,
                "rule": RULE_FIXED, "n_scans": 0}
    chosen = youden_threshold(rows["y"].to_numpy(), rows["probability"].to_numpy())
    if chosen is None:
        return {"model": model, "fold": fold, "threshold": config.threshold,
                "rule": RULE_UNDEFINED, "n_scans": len(rows)}
    return {"model": model, "fold": fold, "threshold": chosen, "rule": RULE_YOUDEN,
            "n_scans": len(rows)}


def threshold_table(predictions: pd.DataFrame, groups: pd.DataFrame,
                    config: EvaluationConfig) -> pd.DataFrame:
    """The `thresholds` table (module docstring) of every model with val rows."""
    labelled = labelled_predictions(predictions, groups)
    val = labelled.loc[labelled["set"] == SET_VAL]
    records: list[dict[str, object]] = []
    for model in ordered_models(val["branch"]):
        rows = val.loc[val["branch"] == model]
        records.append(_record(model, None, rows, config))
        for fold in sorted(int(f) for f in rows["fold"].unique()):
            records.append(_record(model, fold, rows.loc[rows["fold"] != fold], config))
    table = pd.DataFrame.from_records(records, columns=list(THRESHOLD_COLUMNS))
    table["fold"] = table["fold"].astype("Int64")
    table["threshold"] = table["threshold"].astype(np.float64)
    table["n_scans"] = table["n_scans"].astype(np.int64)
    return table


def _fold_key(fold: object) -> int | None:
    return None if fold is None or bool(pd.isna(fold)) else int(fold)  # type: ignore[call-overload]


def lookup_thresholds(thresholds: pd.DataFrame, models: Sequence[object] | pd.Series,
                      folds: Sequence[object] | pd.Series,
                      config: EvaluationConfig) -> np.ndarray:
    """The threshold of each (model, fold) pair; fold None/NA means all of TV. A model
    without a `thresholds` row (no val rows) gets the fixed threshold."""
    keyed = {(str(model), _fold_key(fold)): float(threshold) for model, fold, threshold in
             zip(thresholds["model"], thresholds["fold"], thresholds["threshold"], strict=True)}
    out = []
    for model, fold in zip(list(models), list(folds), strict=True):
        source = THRESHOLD_SOURCE.get(str(model), str(model))
        key = (source, _fold_key(fold))
        out.append(keyed.get(key, config.threshold))
    return np.asarray(out, dtype=np.float64)
