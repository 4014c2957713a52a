from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dsan_core.config import EvaluationConfig
from dsan_core.evaluation.metrics import binary_metrics
from dsan_core.evaluation.tables import metrics_table
from dsan_core.evaluation.thresholds import (
    THRESHOLD_COLUMNS,
    lookup_thresholds,
    threshold_table,
    youden_threshold,
)
from tests.dsan_core.evaluation import cohort

NO_BOOTSTRAP = EvaluationConfig(bootstrap_samples=0)


def test_youden_on_a_hand_case_ties_go_to_the_cut_nearest_one_half() -> None:
    # Cuts 0.225 (sens 1, spec 1/2), 0.375 (1/2, 1/2) and 0.6 (1/2, 1): J = 1/2, 0, 1/2.
    assert youden_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.6)
    # A perfect separation: the one cut between the classes.
    assert youden_threshold([0, 0, 1], [0.1, 0.2, 0.9]) == pytest.approx(0.55)


@pytest.mark.parametrize(("y", "p"), [([1, 1], [0.2, 0.8]), ([0, 1], [0.4, 0.4])])
def test_youden_is_undefined_with_one_class_or_one_score(y: list[int], p: list[float]) -> None:
    assert youden_threshold(y, p) is None


def test_table_has_an_all_tv_and_a_nested_row_per_fold() -> None:
    table = threshold_table(cohort.predictions(), cohort.groups(), EvaluationConfig())
    assert tuple(table.columns) == THRESHOLD_COLUMNS
    rows = table[table["model"] == "att_us"]
    assert rows["fold"].isna().sum() == 1 and sorted(rows["fold"].dropna()) == [0, 1]
    # att_us out-of-fold, fold 1's scans t4..t7: y 1 0 1 0, P 0.9 0.3 0.7 0.2.
    fold_0 = rows[rows["fold"] == 0].iloc[0]
    assert fold_0["threshold"] == pytest.approx(0.5) and fold_0["n_scans"] == 4


def test_the_nested_threshold_never_reads_the_fold_it_scores() -> None:
    predictions = cohort.predictions()
    clean = threshold_table(predictions, cohort.groups(), EvaluationConfig())
    # Fold 0's val rows turned upside down: fold 0's own threshold must not move.
    attacked = predictions.copy()
    rows = (attacked["set"] == "val") & (attacked["fold"] == 0)
    attacked.loc[rows, "probability"] = 1.0 - attacked.loc[rows, "probability"]
    dirty = threshold_table(attacked, cohort.groups(), EvaluationConfig())
    key = ["model", "fold"]
    merged = clean.merge(dirty, on=key, suffixes=("_clean", "_dirty"))
    fold_0 = merged[merged["fold"] == 0]
    np.testing.assert_array_equal(fold_0["threshold_clean"], fold_0["threshold_dirty"])
    # ... while the thresholds chosen on fold 0 (fold 1's and all-TV) do move.
    changed = merged[merged["fold"] != 0].fillna({"fold": -1})
    assert (changed["threshold_clean"] != changed["threshold_dirty"]).any()


def test_fixed_rule_uses_the_configured_threshold() -> None:
    config = EvaluationConfig(threshold_rule="fixed", threshold=0.4)
    table = threshold_table(cohort.predictions(), cohort.groups(), config)
    assert set(table["threshold"]) == {0.4} and set(table["rule"]) == {"fixed"}


def test_lookup_maps_shipped_to_ds_and_unknown_models_to_the_fixed_threshold() -> None:
    table = pd.DataFrame({"model": ["att_ds", "att_ds"], "fold": pd.array([None, 0], "Int64"),
                          "threshold": [0.3, 0.7], "rule": "youden", "n_scans": [8, 4]})
    got = lookup_thresholds(table, ["shipped", "att_ds", "att_ds", "nobody"],
                            [None, 0, None, None], EvaluationConfig(threshold=0.45))
    np.testing.assert_array_equal(got, [0.3, 0.7, 0.3, 0.45])


def test_tv_metrics_use_each_folds_nested_threshold_and_test_the_all_tv_one() -> None:
    predictions, groups = cohort.predictions(), cohort.groups()
    thresholds = threshold_table(predictions, groups, EvaluationConfig())
    table = metrics_table(predictions, groups, cohort.splits(), NO_BOOTSTRAP,
                          thresholds=thresholds)
    rows = thresholds[thresholds["model"] == "rn34_us"].set_index("fold")
    per_scan = [rows.loc[0, "threshold"]] * 4 + [rows.loc[1, "threshold"]] * 4
    expected = binary_metrics([1, 1, 0, 0, 1, 0, 1, 0], cohort.VAL["rn34_us"],
                              np.array(per_scan))
    tv = table[(table["model"] == "rn34_us") & (table["set"] == "tv") & (table["bin"] == "all")]
    got = tv.set_index("metric")["value"]
    for metric in ("accuracy", "sensitivity", "specificity", "f1"):
        assert got[metric] == pytest.approx(expected[metric]), metric
    all_tv = float(thresholds[(thresholds["model"] == "rn34_us")
                              & thresholds["fold"].isna()]["threshold"].iloc[0])
    fold_0 = binary_metrics([1, 1, 0, 0], cohort.TEST_P[("rn34_us", 0)], all_tv)
    test = table[(table["model"] == "rn34_us") & (table["aggregate"] == "fold")
                 & (table["fold"] == 0) & (table["bin"] == "all")].set_index("metric")["value"]
    assert test["sensitivity"] == pytest.approx(fold_0["sensitivity"])
