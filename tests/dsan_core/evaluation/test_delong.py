from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from dsan_core.errors import InputError
from dsan_core.evaluation.delong import delong_covariance, delong_test
from tests.dsan_core.evaluation.asah_data import NDKA, OUTCOME, S100B, WFNS


def _psi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])


def brute_force_covariance(y_true: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, ...]:
    """DeLong et al. (1988) by definition: O(m n) structural components per model."""
    positive = y_true == 1
    v10, v01, aucs = [], [], []
    for s in np.atleast_2d(scores):
        kernel = _psi(s[positive], s[~positive])
        aucs.append(kernel.mean())
        v10.append(kernel.mean(axis=1))
        v01.append(kernel.mean(axis=0))
    m, n = int(positive.sum()), int((~positive).sum())
    cov = np.cov(np.array(v10)) / m + np.cov(np.array(v01)) / n
    return np.array(aucs), np.atleast_2d(cov)


def _asah() -> tuple[np.ndarray, np.ndarray]:
    y = np.array([1 if o == "P" else 0 for o in OUTCOME])
    return y, np.array([WFNS, NDKA, S100B], dtype=float)


def test_asah_aucs_variances_and_covariances_match_proc() -> None:
    # pROC tests/testthat: auc of roc(outcome, x); var(); cov() with method "delong".
    y, scores = _asah()
    aucs, cov = delong_covariance(y, scores)
    np.testing.assert_allclose(aucs, [0.8236788617886179, 0.61195799457994582,
                                      0.7313685636856369], rtol=1e-12)
    np.testing.assert_allclose(np.diag(cov), [0.00146991470882363, 0.0031908105493913,
                                              0.00266868245717244], rtol=1e-12)
    np.testing.assert_allclose([cov[0, 1], cov[1, 2], cov[2, 0]],
                               [-0.000532967856762438, -0.000756164938056579,
                                0.00119615567376754], rtol=1e-12)


@pytest.mark.parametrize(
    ("a", "b", "z", "p", "ci"),
    [
        (0, 2, 2.20898359144091, 0.0271757822291882, (0.0104061769564846, 0.174214419249478)),
        (0, 1, 2.79777591868904, 0.00514557970691098, (0.0634011709339876, 0.3600405634833566)),
        (1, 2, -1.39077002573558, 0.164295175223054, (-0.2876917446341914, 0.0488706064228094)),
    ],
)
def test_asah_paired_tests_match_proc_roc_test(a: int, b: int, z: float, p: float,
                                               ci: tuple[float, float]) -> None:
    # roc.test(r.wfns, r.s100b), (r.wfns, r.ndka), (r.ndka, r.s100b) in pROC's tests.
    y, scores = _asah()
    result = delong_test(y, scores[a], scores[b])
    assert result.z == pytest.approx(z, rel=1e-10)
    assert result.p_value == pytest.approx(p, rel=1e-10)
    assert (result.ci_low, result.ci_high) == pytest.approx(ci, rel=1e-10)


def test_hand_computed_example_with_a_tie() -> None:
    # a: COVID (0.9, 0.7), CAP (0.7, 0.2): V10 = (1, 0.75), V01 = (0.75, 1), AUC 0.875.
    # b: COVID (0.8, 0.3), CAP (0.5, 0.4): V10 = (1, 0),    V01 = (0.5, 0.5), AUC 0.5.
    # S10 = [[1/32, 1/8], [1/8, 1/2]], S01 = [[1/32, 0], [0, 0]], m = n = 2:
    # var(a) = 1/32, var(b) = 1/4, cov = 1/16; var(a - b) = 5/32; z = 0.375 / sqrt(5/32).
    y = np.array([1, 1, 0, 0])
    a = np.array([0.9, 0.7, 0.7, 0.2])
    b = np.array([0.8, 0.3, 0.5, 0.4])
    aucs, cov = delong_covariance(y, np.vstack([a, b]))
    np.testing.assert_allclose(aucs, [0.875, 0.5])
    np.testing.assert_allclose(cov, [[1 / 32, 1 / 16], [1 / 16, 1 / 4]])
    result = delong_test(y, a, b)
    assert result.variance == pytest.approx(5 / 32)
    assert result.z == pytest.approx(np.sqrt(0.9))
    assert result.p_value == pytest.approx(2 * norm.sf(np.sqrt(0.9)))


@pytest.mark.parametrize(
    ("y", "scores"),
    [
        ([1, 0, 1, 0, 1, 1, 0], [[0.9, 0.1, 0.4, 0.4, 0.8, 0.3, 0.6],
                                 [0.5, 0.5, 0.5, 0.2, 0.7, 0.7, 0.1]]),
        ([0, 0, 1, 1, 1, 0, 1, 0, 1], [[1, 2, 2, 3, 3, 3, 4, 1, 5],
                                       [5, 4, 3, 2, 1, 1, 2, 3, 4],
                                       [0, 0, 0, 1, 1, 1, 1, 0, 1]]),
    ],
)
def test_fast_algorithm_equals_brute_force_structural_components(
        y: list[int], scores: list[list[float]]) -> None:
    fast_aucs, fast_cov = delong_covariance(np.array(y), np.array(scores, dtype=float))
    slow_aucs, slow_cov = brute_force_covariance(np.array(y), np.array(scores, dtype=float))
    np.testing.assert_allclose(fast_aucs, slow_aucs, rtol=1e-12)
    np.testing.assert_allclose(fast_cov, slow_cov, rtol=1e-12, atol=1e-15)


def test_identical_models_give_z_0_and_p_1() -> None:
    y = np.array([1, 0, 1, 0])
    s = np.array([0.8, 0.3, 0.4, 0.5])
    result = delong_test(y, s, s)
    assert (result.z, result.p_value, result.difference) == (0.0, 1.0, 0.0)


def test_one_class_is_an_input_error() -> None:
    with pytest.raises(InputError, match="COVID and CAP"):
        delong_test(np.array([1, 1]), np.array([0.1, 0.2]), np.array([0.3, 0.4]))
