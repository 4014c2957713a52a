from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ttest_rel

from dsan_core.config import EvaluationConfig
from dsan_core.errors import InputError
from dsan_core.evaluation.comparisons import (
    COMPARISON_COLUMNS,
    comparisons_table,
    delong_tests,
    holm_adjust,
    paired_t_test,
    paired_t_tests,
)
from dsan_core.evaluation.delong import delong_test
from dsan_core.evaluation.metrics import METRICS, binary_metrics
from dsan_core.evaluation.tables import METRICS_COLUMNS, metrics_table, reliability_tables
from dsan_core.prediction_table import labelled_predictions
from tests.dsan_core.evaluation import cohort

# The paper's fixed 0.5, so hand-computed thresholded metrics stay simple.
NO_BOOTSTRAP = EvaluationConfig(bootstrap_samples=0, threshold_rule="fixed")


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return metrics_table(cohort.predictions(), cohort.groups(), cohort.splits(), NO_BOOTSTRAP)


def _row(table: pd.DataFrame, **where: object) -> pd.Series:
    mask = np.ones(len(table), dtype=bool)
    for column, value in where.items():
        hit = table[column].isna() if value is None else table[column] == value
        mask &= hit.fillna(False).to_numpy(dtype=bool)
    rows = table.loc[mask]
    assert len(rows) == 1, where
    return rows.iloc[0]


def test_columns_and_conventions(table: pd.DataFrame) -> None:
    assert tuple(table.columns) == METRICS_COLUMNS
    assert str(table["fold"].dtype) == "Int64"
    shape = table.groupby(["set", "aggregate"])["fold"].agg(lambda f: sorted(
        "NA" if pd.isna(x) else int(x) for x in f.unique()))
    assert shape.to_dict() == {("test", "averaged"): ["NA"], ("test", "fold"): [0, 1],
                               ("test", "mean"): ["NA"], ("test", "std"): ["NA"],
                               ("tv", "pooled"): ["NA"]}
    # 2 models x 4 bins x 6 metrics x (1 pooled + 2 folds + mean + std + averaged)
    assert len(table) == 2 * 4 * len(METRICS) * 6


@pytest.mark.parametrize("model", ["rn34_us", "att_us"])
def test_tv_pooled_equals_the_metrics_of_all_out_of_fold_predictions(
        table: pd.DataFrame, model: str) -> None:
    y = [1, 1, 0, 0, 1, 0, 1, 0]
    expected = binary_metrics(y, cohort.VAL[model])
    for metric, value in expected.items():
        row = _row(table, model=model, set="tv", bin="all", metric=metric)
        assert row["value"] == pytest.approx(value)
        assert (row["n_covid"], row["n_cap"], row["n_patients"]) == (4, 4, 6)


@pytest.mark.parametrize("model", ["rn34_us", "att_us"])
def test_test_rows_per_fold_and_mean_std_with_ddof_1(table: pd.DataFrame, model: str) -> None:
    y = [1, 1, 0, 0]
    per_fold = [binary_metrics(y, cohort.TEST_P[(model, fold)]) for fold in (0, 1)]
    for metric in per_fold[0]:
        values = [per_fold[0][metric], per_fold[1][metric]]
        for fold in (0, 1):
            row = _row(table, model=model, set="test", aggregate="fold", fold=fold, bin="all",
                       metric=metric)
            assert row["value"] == pytest.approx(values[fold])
        mean = _row(table, model=model, set="test", aggregate="mean", bin="all", metric=metric)
        std = _row(table, model=model, set="test", aggregate="std", bin="all", metric=metric)
        assert mean["value"] == pytest.approx(np.mean(values))
        assert std["value"] == pytest.approx(np.std(values, ddof=1))


@pytest.mark.parametrize("model", ["rn34_us", "att_us"])
def test_the_fold_averaged_model_scores_the_mean_probability_once(
        table: pd.DataFrame, model: str) -> None:
    mean = np.mean([cohort.TEST_P[(model, 0)], cohort.TEST_P[(model, 1)]], axis=0)
    expected = binary_metrics([1, 1, 0, 0], mean)
    for metric, value in expected.items():
        row = _row(table, model=model, set="test", aggregate="averaged", bin="all",
                   metric=metric)
        assert row["value"] == pytest.approx(value)
        assert (row["n_covid"], row["n_cap"], row["n_patients"]) == (2, 2, 3)


def test_the_shipped_model_is_its_own_row_from_the_shipped_predictions() -> None:
    shipped = pd.DataFrame({"scan_id": ["x0", "x1", "x2", "x3"],
                            "probability": [0.9, 0.4, 0.45, 0.1]})
    table = metrics_table(cohort.predictions(), cohort.groups(), cohort.splits(),
                          NO_BOOTSTRAP, shipped=shipped)
    rows = table[table["model"] == "shipped"]
    assert set(rows["set"]) == {"test"} and set(rows["aggregate"]) == {"averaged"}
    expected = binary_metrics([1, 1, 0, 0], [0.9, 0.4, 0.45, 0.1])
    for metric, value in expected.items():
        row = _row(table, model="shipped", bin="all", metric=metric)
        assert row["value"] == pytest.approx(value)


def test_a_bin_with_one_class_has_nan_auc_not_a_crash(table: pd.DataFrame) -> None:
    # Test bin '>0.030' holds x0 only (COVID); '<0.005' holds x2, x3 (CAP).
    high = _row(table, model="att_us", set="test", aggregate="mean", bin=">0.030", metric="auc")
    low = _row(table, model="att_us", set="test", aggregate="mean", bin="<0.005",
               metric="sensitivity")
    assert math.isnan(high["value"]) and math.isnan(low["value"])
    assert (high["n_covid"], high["n_cap"]) == (1, 0)
    spec = _row(table, model="att_us", set="test", aggregate="fold", fold=1, bin="<0.005",
                metric="specificity")
    assert spec["value"] == pytest.approx(1.0)  # 0.4 and 0.1 are both CAP calls


def test_bootstrap_intervals_are_seeded_and_absent_without_bootstrap(
        table: pd.DataFrame) -> None:
    assert table[["ci_low", "ci_high"]].isna().all().all()
    config = EvaluationConfig(bootstrap_samples=50, seed=3)
    first = metrics_table(cohort.predictions(), cohort.groups(), cohort.splits(), config)
    again = metrics_table(cohort.predictions(), cohort.groups(), cohort.splits(), config)
    pd.testing.assert_frame_equal(first, again)
    defined = first.dropna(subset=["ci_low", "ci_high"])
    assert len(defined) > 0 and (defined["ci_low"] <= defined["ci_high"]).all()
    assert first.loc[first["aggregate"] == "std", "ci_low"].isna().all()


def test_paired_t_test_table_equals_scipy() -> None:
    values = {"rn34_us": [0.90, 0.92, 0.91], "att_us": [0.93, 0.94, 0.96],
              "att_ss": [0.92, np.nan, 0.95]}
    rows = [{"model": m, "set": "test", "aggregate": "fold", "fold": f, "bin": "all",
             "metric": "auc", "value": v, "ci_low": np.nan, "ci_high": np.nan, "n_covid": 1,
             "n_cap": 1, "n_patients": 1} for m, vs in values.items() for f, v in enumerate(vs)]
    result = paired_t_tests(pd.DataFrame(rows))
    assert tuple(result.columns) == COMPARISON_COLUMNS
    assert list(zip(result["model_a"], result["model_b"], strict=True)) == [
        ("rn34_us", "att_us"), ("rn34_us", "att_ss"), ("att_us", "att_ss")]
    first = ttest_rel(values["rn34_us"], values["att_us"])
    assert result["statistic"].iloc[0] == pytest.approx(first.statistic)
    assert result["p_value"].iloc[0] == pytest.approx(first.pvalue)
    assert result["estimate"].iloc[0] == pytest.approx(-0.0333333333)
    # The fold where att_ss is undefined is left out of its pairs.
    assert list(result["n"]) == [3, 2, 2]
    assert set(result["test"]) == {"paired_t"} and result["fold"].isna().all()


def test_equal_differences_in_every_fold_give_nan_not_infinity() -> None:
    # Differences 0.1 in every fold (in float noise: 0.3 - 0.2 != 0.4 - 0.3 exactly).
    a, b = np.array([0.3, 0.4, 0.5]), np.array([0.2, 0.3, 0.4])
    statistic, p = paired_t_test(a, b)
    assert math.isnan(statistic) and math.isnan(p)
    assert np.std(a - b, ddof=1) > 0  # float noise, on which scipy's t is ~1e15
    values = {"rn34_us": [0.5, 0.5, 0.5], "att_us": [0.5, 0.5, 0.5]}
    rows = [{"model": m, "set": "test", "aggregate": "fold", "fold": f, "bin": "all",
             "metric": "specificity", "value": v, "ci_low": np.nan, "ci_high": np.nan,
             "n_covid": 1, "n_cap": 1, "n_patients": 1}
            for m, vs in values.items() for f, v in enumerate(vs)]
    result = paired_t_tests(pd.DataFrame(rows))
    assert result["estimate"].iloc[0] == 0.0
    assert result[["statistic", "p_value"]].isna().all().all()


def test_holm_on_a_hand_computed_three_test_case() -> None:
    # Sorted: 0.01 * 3 = 0.03; 0.03 * 2 = 0.06; 0.04 * 1 = 0.04 -> max(0.06, 0.04) = 0.06.
    np.testing.assert_allclose(holm_adjust([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    # NaN is not a test: m = 2 here; and adjusted values are capped at 1.
    np.testing.assert_allclose(holm_adjust([0.6, np.nan, 0.02]), [0.6, np.nan, 0.04])
    np.testing.assert_allclose(holm_adjust([0.7, 0.8]), [1.0, 1.0])


def test_comparisons_are_holm_adjusted_within_each_family(table: pd.DataFrame) -> None:
    result = comparisons_table(table, cohort.predictions(), cohort.groups())
    assert tuple(result.columns) == COMPARISON_COLUMNS
    assert set(result["family"]) == {"paired_t:test:all", "paired_t:test:bins",
                                     "delong:tv:all", "delong:tv:bins", "delong:test:all",
                                     "delong:test:bins"}
    for _, rows in result.groupby("family"):
        np.testing.assert_allclose(rows["p_holm"], holm_adjust(rows["p_value"].to_numpy()))
    defined = result.dropna(subset=["p_value"])
    assert (defined["p_holm"] >= defined["p_value"]).all()


def test_delong_rows_pair_the_same_scans() -> None:
    result = delong_tests(cohort.predictions(), cohort.groups())
    labelled = labelled_predictions(cohort.predictions(), cohort.groups())
    val = labelled.loc[labelled["set"] == "val"].sort_values("scan_id")
    a, b = (val.loc[val["branch"] == m, "probability"].to_numpy() for m in ("rn34_us", "att_us"))
    expected = delong_test(val.loc[val["branch"] == "rn34_us", "y"].to_numpy(), a, b)
    tv = result.loc[(result["set"] == "tv") & (result["bin"] == "all")].iloc[0]
    assert (tv["estimate"], tv["statistic"], tv["p_value"], tv["n"]) == pytest.approx(
        (expected.difference, expected.z, expected.p_value, 8))
    # Test: the fold-averaged models, one row per pair and bin.
    averaged = result.loc[(result["set"] == "test") & (result["bin"] == "all")]
    assert len(averaged) == 1 and averaged["fold"].isna().all() and averaged["n"].iloc[0] == 4
    mean = {m: np.mean([cohort.TEST_P[(m, 0)], cohort.TEST_P[(m, 1)]], axis=0)
            for m in ("rn34_us", "att_us")}
    on_test = delong_test([1, 1, 0, 0], mean["rn34_us"], mean["att_us"])
    assert averaged["estimate"].iloc[0] == pytest.approx(on_test.difference)
    one_class = result.loc[(result["set"] == "test") & (result["bin"] == ">0.030")]
    assert one_class["p_value"].isna().all()


def test_the_in_sample_ds_is_not_tested_on_tv_and_baselines_not_against_each_other() -> None:
    predictions = cohort.predictions()
    val = predictions[(predictions["set"] == "val") & (predictions["branch"] == "att_us")]
    extra = pd.concat([val.assign(branch=name, model_key=name) for name in
                       ("att_ds", "base_intensity", "base_ratio")], ignore_index=True)
    result = delong_tests(pd.concat([predictions, extra], ignore_index=True), cohort.groups())
    pairs = set(zip(result["model_a"], result["model_b"], strict=True))
    assert not any("att_ds" in pair for pair in pairs)
    assert ("base_intensity", "base_ratio") not in pairs
    assert ("att_us", "base_intensity") in pairs


def test_reliability_tables_per_model_and_fold() -> None:
    table = reliability_tables(cohort.predictions(), cohort.groups(), n_bins=5)
    counts = table.groupby(["model", "set"], sort=False)["n_scans"].sum()
    assert counts.to_dict() == {("rn34_us", "tv"): 8, ("rn34_us", "test"): 8,
                                ("att_us", "tv"): 8, ("att_us", "test"): 8}
    assert len(table) == 2 * (1 + 2) * 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"set": "train"}, "expected set"),
        ({"probability": 1.5}, "expected probability"),
        ({"scan_id": "nobody"}, "scan nobody: expected every predicted scan"),
    ],
)
def test_contract_violations_are_input_errors(change: dict[str, object], message: str) -> None:
    predictions = cohort.predictions()
    for column, value in change.items():
        predictions.loc[0, column] = value
    with pytest.raises(InputError, match=message):
        labelled_predictions(predictions, cohort.groups())


def test_duplicate_predictions_are_input_errors() -> None:
    predictions = cohort.predictions()
    doubled = pd.concat([predictions, predictions.iloc[[0]]], ignore_index=True)
    with pytest.raises(InputError, match="scan t0: expected one val prediction"):
        labelled_predictions(doubled, cohort.groups())
