"""The long `comparisons` table: paired tests between models, Holm-adjusted per table.

Columns: model_a, model_b (a before b in `ordered_models`), set, fold, bin, metric,
test, family, estimate, statistic, p_value, p_holm, n.

    test 'paired_t'  scipy's `ttest_rel` over the test set's fold models (METHOD.md:
                     "paired t-tests between models"), between the paper's four models:
                     one row per metric and bin, set 'test', fold null; estimate = mean
                     over folds of (a - b); statistic = t; n = folds where both values
                     are defined. The fold models score the SAME test scans, so the
                     folds are not independent samples: the test is the paper's, not a
                     sound basis for a claim. Differences equal in every fold (zero
                     variance, up to float noise) give t and p NaN, not inf and 0.
    test 'delong'    DeLong's paired AUC test (`delong.delong_test`) on the same scans;
                     metric 'auc'; estimate = AUC_a - AUC_b; statistic = z; n = scans.
                     set 'tv': pooled out-of-fold predictions (fold null) of the trained
                     branches, the NESTED DS and the baselines (the in-sample DS is not
                     tested: its weights saw those rows). set 'test': the fold-averaged
                     models (fold null): one model per row, the shipped model for DS.
                     Baseline-against-baseline pairs are left out.

family       the table a p-value is corrected within: '<test>:<set>:all' (bin 'all',
             Table II's comparisons) or '<test>:<set>:bins' (the per-bin ones, Table III)
p_holm       Holm-Bonferroni adjusted p within the family (`holm_adjust`); the report's
             stars use it

A comparison that is undefined (fewer than 2 folds, one class in a bin) keeps its row
with NaN estimate / statistic / p_value, so the table has the same shape every run.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np
import pandas as pd

from dsan_core.branches import ATT_DS, MODELS
from dsan_core.evaluation.delong import delong_test
from dsan_core.evaluation.metrics import AUC, METRICS
from dsan_core.evaluation.tables import (
    AGG_FOLD,
    BIN_ALL,
    BINS,
    METRICS_COLUMNS,
    SET_TV,
    averaged_predictions,
    rows_in_bin,
)
from dsan_core.prediction_table import (
    BASELINES,
    SET_TEST,
    SET_VAL,
    labelled_predictions,
    ordered_models,
    require_columns,
)

TEST_PAIRED_T = "paired_t"
TEST_DELONG = "delong"
COMPARISON_COLUMNS: tuple[str, ...] = ("model_a", "model_b", "set", "fold", "bin", "metric",
                                       "test", "family", "estimate", "statistic", "p_value",
                                       "p_holm", "n")
_NAN = float("nan")
#: Per-fold differences whose sample std is at most this (times their scale) are equal.
_ZERO_SPREAD = 1e-9


def family(test: str, set_name: str, bin_name: str) -> str:
    """The Holm family of a comparison (module docstring)."""
    return f"{test}:{set_name}:{'all' if bin_name == BIN_ALL else 'bins'}"


def holm_adjust(p_values: np.ndarray | list[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1). NaN entries
    stay NaN and do not count among the m tests."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    defined = np.flatnonzero(np.isfinite(p))
    m = defined.size
    if m == 0:
        return out
    order = defined[np.argsort(p[defined], kind="stable")]
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(stepped, 1.0)
    return out


def paired_t_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(t, two-sided p) of scipy's `ttest_rel`; both NaN when the differences a - b have
    (numerically) zero spread, where t is undefined (scipy gives inf or ~1e15)."""
    from scipy.stats import ttest_rel

    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.size < 2:
        return _NAN, _NAN
    scale = max(1.0, float(np.max(np.abs(d))))
    if not float(np.std(d, ddof=1)) > _ZERO_SPREAD * scale:
        return _NAN, _NAN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = ttest_rel(a, b)
    return float(result.statistic), float(result.pvalue)


def paired_t_tests(metrics: pd.DataFrame) -> pd.DataFrame:
    """Paired t-tests across the fold models of set 'test' between the paper's models,
    from the `metrics` table (p_holm not yet set: `comparisons_table` does)."""
    require_columns(metrics, METRICS_COLUMNS, "metrics")
    folds = metrics.loc[(metrics["set"] == SET_TEST) & (metrics["aggregate"] == AGG_FOLD)
                        & metrics["model"].isin(MODELS)]
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
                estimate = float(np.mean(pair[:, 0] - pair[:, 1])) if len(pair) >= 2 else _NAN
                statistic, p_value = paired_t_test(pair[:, 0], pair[:, 1])
                records.append({"model_a": a, "model_b": b, "set": SET_TEST, "fold": None,
                                "bin": bin_name, "metric": metric, "test": TEST_PAIRED_T,
                                "family": family(TEST_PAIRED_T, SET_TEST, bin_name),
                                "estimate": estimate, "statistic": statistic,
                                "p_value": p_value, "p_holm": _NAN, "n": len(pair)})
    return _frame(records)


def _delong_record(a: str, b: str, set_name: str, bin_name: str, rows_a: pd.DataFrame,
                   rows_b: pd.DataFrame) -> dict[str, object]:
    paired = rows_a.merge(rows_b[["scan_id", "probability"]], on="scan_id",
                          suffixes=("_a", "_b"))
    y = paired["y"].to_numpy()
    estimate, statistic, p_value = _NAN, _NAN, _NAN
    if 0 < y.sum() < y.size:
        result = delong_test(y, paired["probability_a"].to_numpy(),
                             paired["probability_b"].to_numpy())
        estimate, statistic, p_value = result.difference, result.z, result.p_value
    return {"model_a": a, "model_b": b, "set": set_name, "fold": None, "bin": bin_name,
            "metric": AUC, "test": TEST_DELONG, "family": family(TEST_DELONG, set_name, bin_name),
            "estimate": estimate, "statistic": statistic, "p_value": p_value, "p_holm": _NAN,
            "n": len(paired)}


def _pairs(models: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in itertools.combinations(models, 2)
            if not (a in BASELINES and b in BASELINES)]


def _delong_set(rows: pd.DataFrame, set_name: str) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    for a, b in _pairs(ordered_models(rows["branch"])):
        rows_a = rows.loc[rows["branch"] == a]
        rows_b = rows.loc[rows["branch"] == b]
        for bin_name in BINS:
            records.append(_delong_record(a, b, set_name, bin_name,
                                          rows_in_bin(rows_a, bin_name),
                                          rows_in_bin(rows_b, bin_name)))
    return records


def delong_tests(predictions: pd.DataFrame, groups: pd.DataFrame,
                 shipped: pd.DataFrame | None = None) -> pd.DataFrame:
    """DeLong tests per bin: TV pooled out-of-fold (every model with val rows but the
    in-sample DS) and test between the fold-averaged models (`tables.averaged_predictions`,
    with `shipped` standing for DS)."""
    labelled = labelled_predictions(predictions, groups)
    val = labelled.loc[(labelled["set"] == SET_VAL) & (labelled["branch"] != ATT_DS)]
    averaged = averaged_predictions(labelled.loc[labelled["set"] == SET_TEST], shipped)
    return _frame(_delong_set(val, SET_TV) + _delong_set(averaged, SET_TEST))


def comparisons_table(metrics: pd.DataFrame, predictions: pd.DataFrame, groups: pd.DataFrame,
                      shipped: pd.DataFrame | None = None) -> pd.DataFrame:
    """Paired t-tests (from `metrics`) and DeLong tests (from `predictions`), with the
    Holm-adjusted p of each family."""
    table = pd.concat([paired_t_tests(metrics), delong_tests(predictions, groups, shipped)],
                      ignore_index=True)
    for _, index in table.groupby("family").groups.items():
        table.loc[index, "p_holm"] = holm_adjust(table.loc[index, "p_value"].to_numpy())
    return _frame(table.to_dict("records"))


def _frame(records: list[dict[str, object]] | list[dict[Any, Any]]) -> pd.DataFrame:
    table = pd.DataFrame.from_records(records, columns=list(COMPARISON_COLUMNS))
    table["fold"] = table["fold"].astype("Int64")
    table["n"] = table["n"].astype(np.int64)
    for column in ("estimate", "statistic", "p_value", "p_holm"):
        table[column] = table[column].astype(np.float64)
    return table
