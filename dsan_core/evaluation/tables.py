"""The long `metrics` table (the paper's Tables II and III) and reliability-diagram data.

`metrics` has one row per (model, set, aggregate, fold, bin, metric):

    model      `predictions.EVALUATED` (`MODEL_NAMES` for display): the paper's four,
               att_ds_nested (tv only), shipped (test only), the untrained baselines
    set        'tv': the validation folds' out-of-fold predictions pooled (Table II's TV
               column); 'test': the independent test set
    aggregate  'pooled' (set tv, fold null) | 'fold' (set test, one fold's model, fold k)
               | 'mean' / 'std' (set test, fold null: over the fold models, std with
               ddof = 1, both over the folds where the metric is defined)
               | 'averaged' (set test, fold null: ONE model, per scan the mean P over
               the fold models; for `shipped`, `ensemble.shipped_predictions`)
    fold       0-based fold number, or null (pandas Int64)
    bin        'all' or an analysis bin ('<0.005', '0.005-0.030', '>0.030': Table III)
    metric     auc, accuracy, sensitivity, specificity, f1, ece (`metrics.METRICS`)
    value      the point estimate (scikit-learn; ece from `calibration`)
    ci_low, ci_high  patient-level percentile bootstrap interval (config.ci_level);
               for 'mean' rows the interval of the mean over folds; null for 'std' rows
               and without bootstrap
    n_covid, n_cap, n_patients  scans of each class and patients behind the value (one
               fold's for test rows: every fold model scores the same test scans)

Thresholded metrics use `thresholds` (nested on TV, all-TV on test; see there).

Each set is bootstrapped once (its own seeded stream), and every model, fold and bin of
it reuses the same replicates, so intervals of different models are paired. A bin's
replicate keeps the bin's scans of the patients drawn for the whole set.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dsan_core.branches import ATT_DS
from dsan_core.config import EvaluationConfig
from dsan_core.evaluation.bootstrap import (
    patient_bootstrap_weights,
    percentile_interval,
    weighted_metrics,
)
from dsan_core.evaluation.calibration import (
    RELIABILITY_COLUMNS,
    expected_calibration_error,
    reliability_table,
)
from dsan_core.evaluation.metrics import ECE, METRICS, binary_metrics
from dsan_core.evaluation.thresholds import lookup_thresholds, threshold_table
from dsan_core.groups import ANALYSIS_BINS
from dsan_core.prediction_table import (
    SET_TEST,
    SET_VAL,
    SHIPPED,
    attach,
    labelled_predictions,
    ordered_models,
)

SET_TV = "tv"
AGG_POOLED = "pooled"
AGG_FOLD = "fold"
AGG_MEAN = "mean"
AGG_STD = "std"
AGG_AVERAGED = "averaged"
BIN_ALL = "all"
BINS: tuple[str, ...] = (BIN_ALL, *ANALYSIS_BINS)

METRICS_COLUMNS: tuple[str, ...] = ("model", "set", "aggregate", "fold", "bin", "metric",
                                    "value", "ci_low", "ci_high", "n_covid", "n_cap",
                                    "n_patients")
RELIABILITY_TABLE_COLUMNS: tuple[str, ...] = ("model", "set", "aggregate", "fold",
                                              *RELIABILITY_COLUMNS)


class _Replicates:
    """Bootstrap weights of one set's scans, looked up by scan_id."""

    def __init__(self, rows: pd.DataFrame, config: EvaluationConfig, stream: int) -> None:
        scans = rows.drop_duplicates("scan_id").sort_values("scan_id")
        self.column = pd.Series(np.arange(len(scans)), index=scans["scan_id"].to_numpy())
        rng = np.random.default_rng([config.seed, stream])
        self.weights = patient_bootstrap_weights(scans["patient_id"].to_numpy(),
                                                 config.bootstrap_samples, rng)
        self.config = config

    def metrics(self, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        w = self.weights[:, self.column.loc[rows["scan_id"].to_numpy()].to_numpy()]
        return weighted_metrics(rows["y"].to_numpy(), rows["probability"].to_numpy(), w,
                                rows["threshold"].to_numpy(), self.config.ece_bins)


def _point(rows: pd.DataFrame, config: EvaluationConfig) -> dict[str, float]:
    y, p = rows["y"].to_numpy(), rows["probability"].to_numpy()
    values = binary_metrics(y, p, rows["threshold"].to_numpy())
    values[ECE] = float(expected_calibration_error(y, p, config.ece_bins)) if len(rows) else (
        float("nan"))
    return values


def rows_in_bin(rows: pd.DataFrame, bin_name: str) -> pd.DataFrame:
    """The rows of one analysis bin, or all of them for bin 'all'."""
    return rows if bin_name == BIN_ALL else rows.loc[rows["analysis_bin"] == bin_name]


def _records(model: str, set_name: str, aggregate: str, fold: int | None, bin_name: str,
             values: dict[str, float], intervals: dict[str, tuple[float, float]],
             rows: pd.DataFrame) -> list[dict[str, object]]:
    n_covid = int(rows["y"].sum())
    out: list[dict[str, object]] = []
    for metric in METRICS:
        low, high = intervals.get(metric, (float("nan"), float("nan")))
        out.append({"model": model, "set": set_name, "aggregate": aggregate, "fold": fold,
                    "bin": bin_name, "metric": metric, "value": values[metric],
                    "ci_low": low, "ci_high": high, "n_covid": n_covid,
                    "n_cap": len(rows) - n_covid,
                    "n_patients": int(rows["patient_id"].nunique())})
    return out


def _intervals(replicates: dict[str, np.ndarray], level: float) -> dict[str, tuple[float, float]]:
    return {metric: percentile_interval(values, level) for metric, values in replicates.items()}


def _tv_records(val: pd.DataFrame, models: list[str],
                config: EvaluationConfig) -> list[dict[str, object]]:
    replicates = _Replicates(val, config, stream=0) if config.bootstrap_samples else None
    records: list[dict[str, object]] = []
    for model in models:
        model_rows = val.loc[val["branch"] == model]
        if model_rows.empty:
            continue
        for bin_name in BINS:
            rows = rows_in_bin(model_rows, bin_name)
            intervals = (_intervals(replicates.metrics(rows), config.ci_level)
                         if replicates is not None else {})
            records += _records(model, SET_TV, AGG_POOLED, None, bin_name,
                                _point(rows, config), intervals, rows)
    return records


def _summary(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    mean = float(finite.mean()) if finite.size else float("nan")
    std = float(finite.std(ddof=1)) if finite.size > 1 else float("nan")
    return mean, std


def _mean_over_folds(per_fold: list[np.ndarray]) -> np.ndarray:
    """Per replicate, the mean over the folds where the metric is defined (else NaN)."""
    stacked = np.vstack(per_fold)
    finite = np.isfinite(stacked)
    count = finite.sum(axis=0)
    total = np.where(finite, stacked, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _model_bin_records(model: str, model_rows: pd.DataFrame, bin_name: str,
                       replicates: _Replicates | None,
                       config: EvaluationConfig) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    points: dict[str, list[float]] = {metric: [] for metric in METRICS}
    per_fold: dict[str, list[np.ndarray]] = {metric: [] for metric in METRICS}
    rows = model_rows
    for fold in sorted(int(f) for f in model_rows["fold"].unique()):
        rows = rows_in_bin(model_rows.loc[model_rows["fold"] == fold], bin_name)
        values = _point(rows, config)
        reps = replicates.metrics(rows) if replicates is not None else {}
        for metric in METRICS:
            points[metric].append(values[metric])
            if reps:
                per_fold[metric].append(reps[metric])
        records += _records(model, SET_TEST, AGG_FOLD, fold, bin_name, values,
                            _intervals(reps, config.ci_level), rows)
    summaries = {metric: _summary(np.array(points[metric])) for metric in METRICS}
    mean_intervals = {metric: percentile_interval(_mean_over_folds(per_fold[metric]),
                                                  config.ci_level)
                      for metric in METRICS if per_fold[metric]}
    # Every fold model predicts the same test scans: the last fold's counts stand for all.
    records += _records(model, SET_TEST, AGG_MEAN, None, bin_name,
                        {m: s[0] for m, s in summaries.items()}, mean_intervals, rows)
    records += _records(model, SET_TEST, AGG_STD, None, bin_name,
                        {m: s[1] for m, s in summaries.items()}, {}, rows)
    return records


def fold_averaged(test: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, test scan): P averaged over the model's fold models. `test`
    is labelled test rows; the scan's own columns (y, bin, patient) are kept."""
    keep = [c for c in test.columns if c not in ("fold", "probability", "model_key",
                                                 "threshold")]
    mean = test.groupby(["branch", "scan_id"], sort=True)["probability"].mean()
    scans = test.drop_duplicates(["branch", "scan_id"])[keep]
    return scans.merge(mean.reset_index(), on=["branch", "scan_id"], how="left")


def _averaged_records(model: str, rows: pd.DataFrame, replicates: _Replicates | None,
                      config: EvaluationConfig) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    for bin_name in BINS:
        part = rows_in_bin(rows, bin_name)
        intervals = (_intervals(replicates.metrics(part), config.ci_level)
                     if replicates is not None else {})
        records += _records(model, SET_TEST, AGG_AVERAGED, None, bin_name,
                            _point(part, config), intervals, part)
    return records


def _test_records(test: pd.DataFrame, averaged: pd.DataFrame, models: list[str],
                  config: EvaluationConfig) -> list[dict[str, object]]:
    replicates = _Replicates(test, config, stream=1) if config.bootstrap_samples else None
    records: list[dict[str, object]] = []
    for model in models:
        model_rows = test.loc[test["branch"] == model]
        if not model_rows.empty:
            for bin_name in BINS:
                records += _model_bin_records(model, model_rows, bin_name, replicates, config)
        one = averaged.loc[averaged["branch"] == model]
        if not one.empty:
            records += _averaged_records(model, one, replicates, config)
    return records


def averaged_predictions(labelled_test: pd.DataFrame,
                         shipped: pd.DataFrame | None) -> pd.DataFrame:
    """The fold-averaged models on test (`fold_averaged`), with `shipped` (scan_id,
    probability: `ensemble.shipped_predictions`) as model 'shipped' in place of the
    fold-averaged att_ds, which it equals."""
    averaged = fold_averaged(labelled_test)
    averaged = averaged.loc[averaged["branch"] != ATT_DS]
    if shipped is None or shipped.empty:
        return averaged.reset_index(drop=True)
    scans = labelled_test.drop_duplicates("scan_id").drop(
        columns=["branch", "fold", "probability", "model_key", "threshold"], errors="ignore")
    rows = attach(shipped[["scan_id", "probability"]].astype({"scan_id": str}), scans,
                  "labelled test predictions").assign(branch=SHIPPED)
    return pd.concat([averaged, rows[averaged.columns]], ignore_index=True)


def labelled_with_thresholds(predictions: pd.DataFrame, groups: pd.DataFrame,
                             splits: pd.DataFrame | None, thresholds: pd.DataFrame,
                             config: EvaluationConfig) -> pd.DataFrame:
    """`labelled_predictions` with each row's threshold: val rows their fold's nested
    one, test rows the model's all-TV one (`thresholds`)."""
    labelled = labelled_predictions(predictions, groups, splits)
    folds = labelled["fold"].astype(object).where(labelled["set"] == SET_VAL, None)
    labelled["threshold"] = lookup_thresholds(thresholds, labelled["branch"], folds, config)
    return labelled


def metrics_table(predictions: pd.DataFrame, groups: pd.DataFrame, splits: pd.DataFrame,
                  config: EvaluationConfig, *, thresholds: pd.DataFrame | None = None,
                  shipped: pd.DataFrame | None = None) -> pd.DataFrame:
    """The long `metrics` table (module docstring) of every branch in `predictions`,
    the fold-averaged models and, given `shipped` (`ensemble.shipped_predictions`), the
    shipped model. `thresholds` defaults to `threshold_table(predictions, groups, config)`."""
    if thresholds is None:
        thresholds = threshold_table(predictions, groups, config)
    labelled = labelled_with_thresholds(predictions, groups, splits, thresholds, config)
    test = labelled.loc[labelled["set"] == SET_TEST]
    averaged = averaged_predictions(test, shipped)
    averaged["threshold"] = lookup_thresholds(thresholds, averaged["branch"],
                                              [None] * len(averaged), config)
    models = ordered_models(pd.concat([labelled["branch"], averaged["branch"]]))
    records = _tv_records(labelled.loc[labelled["set"] == SET_VAL], models, config)
    records += _test_records(test, averaged, models, config)
    table = pd.DataFrame.from_records(records, columns=list(METRICS_COLUMNS))
    table["fold"] = table["fold"].astype("Int64")
    for column in ("value", "ci_low", "ci_high"):
        table[column] = table[column].astype(np.float64)
    return table


def reliability_tables(predictions: pd.DataFrame, groups: pd.DataFrame,
                       n_bins: int = 10) -> pd.DataFrame:
    """Reliability-diagram rows per model: set tv pooled (fold null) and set test per fold
    model (aggregate 'fold'); columns `RELIABILITY_TABLE_COLUMNS`."""
    labelled = labelled_predictions(predictions, groups)
    parts: list[pd.DataFrame] = []
    for model in ordered_models(labelled["branch"]):
        rows = labelled.loc[labelled["branch"] == model]
        val = rows.loc[rows["set"] == SET_VAL]
        if len(val):
            parts.append(reliability_table(val["y"], val["probability"], n_bins).assign(
                model=model, set=SET_TV, aggregate=AGG_POOLED, fold=None))
        test = rows.loc[rows["set"] == SET_TEST]
        for fold in sorted(int(f) for f in test["fold"].unique()):
            part = test.loc[test["fold"] == fold]
            parts.append(reliability_table(part["y"], part["probability"], n_bins).assign(
                model=model, set=SET_TEST, aggregate=AGG_FOLD, fold=fold))
    if not parts:
        return pd.DataFrame(columns=list(RELIABILITY_TABLE_COLUMNS))
    table = pd.concat(parts, ignore_index=True)[list(RELIABILITY_TABLE_COLUMNS)]
    table["fold"] = table["fold"].astype("Int64")
    return table
