from __future__ import annotations

import numpy as np
import pytest

from dsan_core.evaluation.calibration import expected_calibration_error, reliability_table

# 10 bins. Bin 0: p 0.05, CAP -> |0 - 0.05| x 1 scan. Bin 1: p 0.15, 0.15, one COVID ->
# |0.5 - 0.15| x 2. Bin 9: p 0.95 and 1.0 (1.0 belongs to the last bin), both COVID ->
# |1 - 0.975| x 2. ECE = (0.05 + 0.7 + 0.05) / 5 = 0.16.
Y = [0, 1, 0, 1, 1]
P = [0.05, 0.15, 0.15, 0.95, 1.0]


def test_ece_hand_case() -> None:
    assert float(expected_calibration_error(Y, P, n_bins=10)) == pytest.approx(0.16)


def test_ece_with_one_bin_is_the_gap_of_the_means() -> None:
    assert float(expected_calibration_error(Y, P, n_bins=1)) == pytest.approx(abs(0.6 - 0.46))


def test_ece_is_zero_when_calibrated() -> None:
    assert float(expected_calibration_error([0, 1, 0, 1], [0.5, 0.5, 0.0, 1.0])) == 0.0


def test_ece_weights_per_replicate() -> None:
    weights = np.array([[1, 1, 1, 1, 1], [0, 0, 0, 1, 1]])
    np.testing.assert_allclose(expected_calibration_error(Y, P, 10, weights), [0.16, 0.025])


def test_reliability_table_hand_case() -> None:
    table = reliability_table(Y, P, n_bins=10)
    assert list(table["n_scans"]) == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    filled = table.loc[table["n_scans"] > 0]
    np.testing.assert_allclose(filled["mean_predicted"], [0.05, 0.15, 0.975])
    np.testing.assert_allclose(filled["fraction_covid"], [0.0, 0.5, 1.0])
    assert table.loc[2, ["mean_predicted", "fraction_covid"]].isna().all()
    np.testing.assert_allclose(table["bin_low"].iloc[[0, 9]], [0.0, 0.9])
    np.testing.assert_allclose(table["bin_high"].iloc[[0, 9]], [0.1, 1.0])
