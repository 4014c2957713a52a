from __future__ import annotations

import numpy as np
import pytest

from dsan_core.evaluation.bootstrap import patient_bootstrap_weights, percentile_interval

# Patient a has 2 scans, b 1, c 3.
PATIENTS = np.array(["a", "a", "b", "c", "c", "c"])


def _weights(seed: int = 7, n: int = 200) -> np.ndarray:
    return patient_bootstrap_weights(PATIENTS, n, np.random.default_rng(seed))


def test_scans_of_one_patient_always_share_their_weight() -> None:
    weights = _weights()
    assert weights.shape == (200, 6)
    assert (weights[:, 0] == weights[:, 1]).all()
    assert (weights[:, 3] == weights[:, 4]).all() and (weights[:, 4] == weights[:, 5]).all()


def test_each_replicate_draws_as_many_patients_as_there_are() -> None:
    weights = _weights()
    per_patient = weights[:, [0, 2, 3]]
    assert (per_patient.sum(axis=1) == 3).all()
    # Drawing patients, not scans: the number of scans in a replicate varies.
    assert len(set(weights.sum(axis=1).tolist())) > 1


def test_seeded_and_not_constant() -> None:
    np.testing.assert_array_equal(_weights(seed=1), _weights(seed=1))
    assert not np.array_equal(_weights(seed=1), _weights(seed=2))


def test_every_patient_is_drawn_about_equally_often() -> None:
    weights = _weights(n=3000)
    np.testing.assert_allclose(weights[:, [0, 2, 3]].mean(axis=0), 1.0, atol=0.06)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.arange(101, dtype=float), (2.5, 97.5)),
        (np.r_[np.arange(101, dtype=float), np.nan, np.nan], (2.5, 97.5)),
    ],
)
def test_percentile_interval_ignores_undefined_replicates(
        values: np.ndarray, expected: tuple[float, float]) -> None:
    assert percentile_interval(values, 0.95) == pytest.approx(expected)


def test_percentile_interval_of_nothing_is_nan() -> None:
    assert np.isnan(percentile_interval(np.array([np.nan]))).all()
