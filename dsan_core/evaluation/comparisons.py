"""The long `comparisons` table: paired tests between every pair of models.

Columns: model_a, model_b (a before b in the paper's model order), set, fold, bin,
metric, test, estimate, statistic, p_value, n.

    test 'paired_t'  scipy's `ttest_rel` over the test set's fold models (METHOD.md:
                     "paired t-tests between models"): one row per metric and bin, set
                     'test', fold null; estimate = mean over folds of (a - b);
                     statistic = t; n = folds where both values are defined
    test 'delong'    DeLong's paired AUC test (`delong.delong_test`) on the same scans:
                     set 'tv' (pooled out-of-fold predictions, fold null) and set
                     'test' per fold model (fold k); metric 'auc'; estimate =
                     AUC_a - AUC_b; statistic = z; n = scans

A comparison that is undefined (fewer than 2 folds, one class in a bin) keeps its row
with NaN estimate / statistic / p_value, so the table has the same shape every run.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
from scipy.stats import ttest_rel

from dsan_core.evaluation.delong import delong_test
from dsan_core.evaluation.metrics import AUC, METRICS
from dsan_core.evaluation.predictions import (
    SET_TEST,
    SET_VAL,
    labelled_predictions,
    ordered_models,
    require_columns,
)
from dsan_core.evaluation.tables import (
    AGG_FOLD,
    BINS,
    METRICS_COLUMNS,
    SET_TV,
    rows_in_bin,
)

TEST_PAIRED_T = "paired_t"
TEST_DELONG = "delong"
COMPARISON_COLUMNS: tuple[str, ...] = ("model_a", "model_b", "set", "fold", "bin", "metric",
                                       "test", "estimate", "statistic", "p_value", "n")
_NAN = float("nan")


def paired_t_tests(metrics: pd.DataFrame) -> pd.DataFrame:
    """Paired t-tests across the fold models of set 'test', from the `metrics` table."""
    require_columns(metrics, METRICS_COLUMNS, "metrics")
    folds = metrics.loc[(metrics["set"] == SET_TEST) & (metrics["aggregate"] == AGG_FOLD)]
    if folds.empty:
        return _frame([])
    wide = folds.set_index(["bin", "metric", "fold", "model"])["value"].unstack("model")
    parts = dict(iter(wide.groupby(level=["bin", "metric"])))
    records: list[dict[str, object]] = []
    for a, b in itertools.combinations(ordered_models(folds["model"]), 2):
        for bin_name in BINS:
            for metric in METRICS:
                if (bin_name, metric) not in parts:
                    continue
                pair = parts[(bin_name, metric)][[a, b]].to_numpy(dtype=np.float64)
                pair = pair[np.isfinite(pair).all(axis=1)]
                statistic, p_value, estimate = _NAN, _NAN, _NAN
                if len(pair) >= 2:
                    estimate = float(np.mean(pair[:, 0] - pair[:, 1]))
                    with warnings.catch_warnings():
                        # Equal differences in every fold: t is undefined (NaN), not an error.
                        warnings.simplefilter("ignore", RuntimeWarning)
                        result = ttest_rel(pair[:, 0], pair[:, 1])
                    statistic, p_value = float(result.statistic), float(result.pvalue)
                records.append({"model_a": a, "model_b": b, "set": SET_TEST, "fold": None,
                                "bin": bin_name, "metric": metric, "test": TEST_PAIRED_T,
                                "estimate": estimate, "statistic": statistic,
                                "p_value": p_value, "n": len(pair)})
    return _frame(records)


def _delong_record(a: str, b: str, set_name: str, fold: int | None, bin_name: str,
                   rows_a: pd.DataFrame, rows_b: pd.DataFrame) -> dict[str, object]:
    paired = rows_a.merge(rows_b[["scan_id", "probability"]], on="scan_id",
                          suffixes=("_a", "_b"))
    y = paired["y"].to_numpy()
    estimate, statistic, p_value = _NAN, _NAN, _NAN
    if 0 < y.sum() < y.size:
        result = delong_test(y, paired["probability_a"].to_numpy(),
                             paired["probability_b"].to_numpy())
        estimate, statistic, p_value = result.difference, result.z, result.p_value
    return {"model_a": a, "model_b": b, "set": set_name, "fold": fold, "bin": bin_name,
            "metric": AUC, "test": TEST_DELONG, "estimate": estimate, "statistic": statistic,
            "p_value": p_value, "n": len(paired)}


def delong_tests(predictions: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """DeLong tests between every pair of models: TV pooled and each test fold, per bin."""
    labelled = labelled_predictions(predictions, groups)
    records: list[dict[str, object]] = []
    for a, b in itertools.combinations(ordered_models(labelled["branch"]), 2):
        rows_a = labelled.loc[labelled["branch"] == a]
        rows_b = labelled.loc[labelled["branch"] == b]
        for bin_name in BINS:
            sub_a, sub_b = rows_in_bin(rows_a, bin_name), rows_in_bin(rows_b, bin_name)
            val_a, val_b = (s.loc[s["set"] == SET_VAL] for s in (sub_a, sub_b))
            if len(val_a) and len(val_b):
                records.append(_delong_record(a, b, SET_TV, None, bin_name, val_a, val_b))
            test_a, test_b = (s.loc[s["set"] == SET_TEST] for s in (sub_a, sub_b))
            for fold in sorted(set(test_a["fold"]) & set(test_b["fold"])):
                records.append(_delong_record(
                    a, b, SET_TEST, int(fold), bin_name,
                    test_a.loc[test_a["fold"] == fold], test_b.loc[test_b["fold"] == fold]))
    return _frame(records)


def comparisons_table(metrics: pd.DataFrame, predictions: pd.DataFrame,
                      groups: pd.DataFrame) -> pd.DataFrame:
    """Paired t-tests (from `metrics`) followed by DeLong tests (from `predictions`)."""
    return pd.concat([paired_t_tests(metrics), delong_tests(predictions, groups)],
                     ignore_index=True)


def _frame(records: list[dict[str, object]]) -> pd.DataFrame:
    table = pd.DataFrame.from_records(records, columns=list(COMPARISON_COLUMNS))
    table["fold"] = table["fold"].astype("Int64")
    table["n"] = table["n"].astype(np.int64)
    for column in ("estimate", "statistic", "p_value"):
        table[column] = table[column].astype(np.float64)
    return table
