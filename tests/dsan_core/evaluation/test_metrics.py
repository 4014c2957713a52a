from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score, roc_auc_score

from dsan_core.errors import InputError
from dsan_core.evaluation.bootstrap import weighted_metrics
from dsan_core.evaluation.calibration import expected_calibration_error
from dsan_core.evaluation.metrics import METRICS, binary_metrics, pooled_auc, scan_auc

# COVID = 1. At threshold 0.5 (inclusive) the calls are 1 1 0 1 0 0 1 1:
# TP 3 (0.9, 0.5, 0.8), FN 1 (0.2), FP 2 (0.5 - the threshold itself - and 0.7), TN 2.
HAND_Y = [1, 1, 1, 0, 0, 0, 0, 1]
HAND_P = [0.9, 0.5, 0.2, 0.5, 0.1, 0.49, 0.7, 0.8]

TABLES = [
    (HAND_Y, HAND_P),
    ([0, 1], [0.4, 0.6]),
    ([1, 1, 0, 0, 1], [0.5, 0.5, 0.5, 0.5, 0.5]),
    ([0, 0, 1, 1, 0, 1, 1, 0, 1], [0.1, 0.9, 0.35, 0.8, 0.5, 0.5, 0.99, 0.0, 1.0]),
]


def test_hand_computed_confusion_matrix() -> None:
    values = binary_metrics(HAND_Y, HAND_P)
    # AUC: COVID-over-CAP pairs 4 + 2.5 (one tie at 0.5) + 1 + 4 = 11.5 of 16.
    assert values == pytest.approx({"auc": 11.5 / 16, "accuracy": 5 / 8, "sensitivity": 3 / 4,
                                    "specificity": 2 / 4, "f1": 6 / 9})


@pytest.mark.parametrize(("y", "p"), TABLES)
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_metrics_equal_scikit_learn(y: list[int], p: list[float], threshold: float) -> None:
    called = (np.array(p) >= threshold).astype(int)
    expected = {
        "auc": roc_auc_score(y, p),
        "accuracy": accuracy_score(y, called),
        "sensitivity": recall_score(y, called, pos_label=1),
        "specificity": recall_score(y, called, pos_label=0),
        "f1": f1_score(y, called),
    }
    assert binary_metrics(y, p, threshold) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("y", "p", "undefined"),
    [
        ([1, 1, 1], [0.2, 0.6, 0.9], {"auc", "specificity"}),
        ([0, 0, 0], [0.2, 0.6, 0.9], {"auc", "sensitivity"}),
        ([0, 0], [0.2, 0.3], {"auc", "sensitivity", "f1"}),
    ],
)
def test_one_class_gives_nan_not_an_error(y: list[int], p: list[float],
                                          undefined: set[str]) -> None:
    values = binary_metrics(y, p)
    assert {name for name, value in values.items() if math.isnan(value)} == undefined


@pytest.mark.parametrize(("y", "p"), TABLES)
def test_weighted_metrics_with_unit_weights_equal_the_point_metrics(
        y: list[int], p: list[float]) -> None:
    weighted = weighted_metrics(y, p, np.ones((1, len(y))))
    expected = binary_metrics(y, p) | {"ece": float(expected_calibration_error(y, p))}
    assert set(weighted) == set(METRICS)
    assert {k: float(v[0]) for k, v in weighted.items()} == pytest.approx(expected)


@pytest.mark.parametrize(("y", "p"), TABLES[:1] + TABLES[3:])
def test_integer_weights_equal_repeated_scans(y: list[int], p: list[float]) -> None:
    weights = np.array([[2, 0, 1, 3, 1, 0, 2, 1, 1], [0, 1, 1, 1, 4, 1, 1, 0, 2]])[:, : len(y)]
    weighted = weighted_metrics(y, p, weights)
    for row, w in enumerate(weights):
        repeated_y, repeated_p = np.repeat(y, w), np.repeat(p, w)
        expected = binary_metrics(repeated_y, repeated_p) | {
            "ece": float(expected_calibration_error(repeated_y, repeated_p))}
        assert {k: float(v[row]) for k, v in weighted.items()} == pytest.approx(
            expected, nan_ok=True)


@pytest.mark.parametrize(
    ("y", "p"), [([1, 2], [0.1, 0.2]), ([1, 0], [0.1, 1.2]), ([1], [0.1, 0.2])])
def test_bad_inputs_are_input_errors(y: list[int], p: list[float]) -> None:
    with pytest.raises(InputError):
        binary_metrics(y, p)


def test_scan_auc_labels_scans_by_id() -> None:
    labels = pd.Series({"a": "COVID", "b": "CAP", "c": "COVID", "d": "CAP"})
    # 3 of the 4 (COVID, CAP) pairs ranked right: AUC 0.75, whatever the order of rows.
    probability = pd.Series({"d": 0.2, "a": 0.9, "b": 0.6, "c": 0.4})
    assert scan_auc(probability, labels) == pytest.approx(0.75)
    assert math.isnan(scan_auc(probability[["a", "c"]], labels))  # one class
    assert math.isnan(scan_auc(pd.Series(dtype=float), labels))
    with pytest.raises(InputError, match="scan e"):
        scan_auc(pd.Series({"e": 0.5}), labels)


def test_pooled_auc_is_one_auc_per_branch() -> None:
    labels = pd.Series({"a": "COVID", "b": "CAP"})
    rows = pd.DataFrame({"scan_id": ["a", "b", "a", "b"], "branch": ["x", "x", "y", "y"],
                         "probability": [0.9, 0.1, 0.1, 0.9]})
    assert pooled_auc(rows, labels) == {"x": 1.0, "y": 0.0}
