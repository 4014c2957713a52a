from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from dsan_core.errors import InputError
from dsan_core.evaluation.baselines import (
    FeatureCase,
    baseline_predictions,
    compute_baselines,
    lung_features,
)
from dsan_core.prediction_table import PREDICTION_COLUMNS, check_predictions
from tests.dsan_core.evaluation import cohort


def test_lung_features_by_hand() -> None:
    # Lung: 4 voxels with values 0.1, 0.3, 0.3, 1.0; the voxel outside (0.9) is ignored.
    image = np.array([[[0.1, 0.3], [0.3, 1.0], [0.9, 0.0]]])
    lung = np.array([[[1, 1], [1, 1], [0, 0]]])
    features = lung_features(image, lung, bins=4)
    assert features["mean_intensity"] == pytest.approx(1.7 / 4)
    # Bins [0, .25), [.25, .5), [.5, .75), [.75, 1]: 1, 2, 0, 1 voxels.
    assert [features[f"hist_{i}"] for i in range(4)] == pytest.approx([0.25, 0.5, 0.0, 0.25])


def test_an_empty_lung_is_an_input_error() -> None:
    with pytest.raises(InputError, match="scan x0: .*empty"):
        lung_features(np.ones((1, 2, 2)), np.zeros((1, 2, 2)), bins=2, scan="x0")


def _features(shift: float = 0.0) -> pd.DataFrame:
    """Mean intensity tracks the label (COVID brighter), plus noise; a 2-bin histogram."""
    groups = cohort.groups().set_index("scan_id")
    rng = np.random.default_rng(0)
    rows = []
    for scan in groups.index:
        covid = groups.loc[scan, "label"] == "COVID"
        mean = 0.4 + 0.2 * covid + 0.05 * rng.standard_normal() + shift
        rows += [(scan, "mean_intensity", mean), (scan, "hist_0", 1 - mean),
                 (scan, "hist_1", mean)]
    return pd.DataFrame(rows, columns=["scan_id", "feature", "value"])


def test_rows_follow_the_predictions_contract_val_out_of_fold_and_test_per_fold() -> None:
    rows = baseline_predictions(_features(), cohort.groups(), cohort.splits(), bins=2)
    assert tuple(rows.columns) == PREDICTION_COLUMNS
    check_predictions(rows)  # one val row per scan and branch, one test row per fold
    assert set(rows["branch"]) == {"base_intensity", "base_ratio", "base_hand"}
    val = rows[(rows["set"] == "val") & (rows["branch"] == "base_intensity")]
    assert sorted(val["scan_id"]) == cohort.TV
    folds = dict(zip(cohort.splits()["scan_id"], cohort.splits()["fold"], strict=True))
    assert all(folds[s] == f for s, f in zip(val["scan_id"], val["fold"], strict=True))
    test = rows[(rows["set"] == "test") & (rows["branch"] == "base_hand")]
    assert sorted(set(test["fold"])) == [0, 1] and len(test) == 2 * len(cohort.TEST)
    # The direction of the one feature is learnt: brighter is COVID out of fold too.
    y = np.isin(val["scan_id"], [s[0] for s in cohort.SCANS if s[2] == "COVID"])
    assert roc_auc_score(y, val["probability"]) > 0.9


def test_out_of_fold_rows_are_never_fit_on_the_fold_they_score() -> None:
    clean = baseline_predictions(_features(), cohort.groups(), cohort.splits(), bins=2)
    # Flip the labels of fold 1's scans: fold 1's own val rows and fold 1's test rows come
    # from models fit on fold 0 only, so they must not move; fold 0's rows must.
    groups = cohort.groups()
    fold_1 = groups["scan_id"].isin([s[0] for s in cohort.SCANS if s[4] == 1])
    groups.loc[fold_1, "label"] = groups.loc[fold_1, "label"].map(
        {"COVID": "CAP", "CAP": "COVID"})
    dirty = baseline_predictions(_features(), groups, cohort.splits(), bins=2)
    merged = clean.merge(dirty, on=["scan_id", "fold", "branch", "set"],
                         suffixes=("_clean", "_dirty"))
    same = merged[merged["fold"] == 1]
    np.testing.assert_array_equal(same["probability_clean"], same["probability_dirty"])
    moved = merged[merged["fold"] == 0]
    assert not np.allclose(moved["probability_clean"], moved["probability_dirty"])


def test_compute_baselines_reads_each_cases_input_and_lung() -> None:
    cases = []
    groups = cohort.groups().set_index("scan_id")
    for i, scan in enumerate(groups.index):
        value = 0.6 if groups.loc[scan, "label"] == "COVID" else 0.3
        image = np.full((1, 2, 2), value + 0.01 * i)
        cases.append(FeatureCase(scan, lambda im=image: im, lambda: np.ones((1, 2, 2))))
    result = compute_baselines(cases, cohort.groups(), cohort.splits(), bins=2)
    assert set(result.features["feature"]) == {"mean_intensity", "hist_0", "hist_1"}
    assert len(result.features) == 3 * len(cases)
    assert len(result.predictions) == 3 * (len(cohort.TV) + 2 * len(cohort.TEST))
