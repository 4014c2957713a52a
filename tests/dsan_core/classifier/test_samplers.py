from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from torch.utils.data import DataLoader

from dsan_core.classifier.samplers import (
    SizeBalancedSampler,
    UniformSampler,
    size_balanced_weights,
)
from dsan_core.errors import InputError
from dsan_core.groups import SAMPLING_GROUPS

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({"covid_small": 10, "covid_large": 15, "cap_small": 30, "cap_large": 20},
         {"covid_small": 1.5, "covid_large": 1.0, "cap_small": 1.0, "cap_large": 1.5}),
        ({"covid_small": 4, "covid_large": 2, "cap_small": 1, "cap_large": 4},
         {"covid_small": 0.5, "covid_large": 1.0, "cap_small": 1.0, "cap_large": 0.25}),
    ],
)
def test_size_balanced_weights_by_hand(counts: dict[str, int], expected: dict[str, float]) -> None:
    assert size_balanced_weights(counts) == pytest.approx(expected)


@pytest.mark.parametrize("empty", SAMPLING_GROUPS)
def test_empty_group_is_a_clear_error(empty: str) -> None:
    counts = {group: 5 for group in SAMPLING_GROUPS}
    counts[empty] = 0
    with pytest.raises(InputError, match=empty):
        size_balanced_weights(counts)


def test_missing_and_unknown_groups() -> None:
    with pytest.raises(InputError, match="cap_large"):
        size_balanced_weights({"covid_small": 1, "covid_large": 1, "cap_small": 1})
    with pytest.raises(InputError, match="covid_tiny"):
        size_balanced_weights({"covid_tiny": 3})


def _labels() -> list[str]:
    # covid_small 10, covid_large 15, cap_small 30, cap_large 20 -> W = [1.5, 1, 1, 1.5]
    return (["covid_small"] * 10 + ["cap_small"] * 30 + ["covid_large"] * 15
            + ["cap_large"] * 20)


def test_size_balanced_frequencies_match_weights() -> None:
    labels = np.array(_labels())
    sampler = SizeBalancedSampler(labels, seed=3, num_samples=40_000)
    drawn = labels[np.fromiter(iter(sampler), dtype=np.int64)]
    expected = np.array([1.5, 1.0, 1.0, 1.5]) / 5.0
    observed = np.array([np.mean(drawn == group) for group in SAMPLING_GROUPS])
    np.testing.assert_allclose(observed, expected, atol=0.01)


def test_size_balanced_draws_uniformly_inside_a_group() -> None:
    labels = np.array(_labels())
    sampler = SizeBalancedSampler(labels, seed=5, num_samples=30_000)
    indices = np.fromiter(iter(sampler), dtype=np.int64)
    covid_small = np.flatnonzero(labels == "covid_small")
    hits = np.bincount(indices, minlength=len(labels))[covid_small]
    # 30000 * 0.3 / 10 = 900 draws per covid_small scan on average.
    assert hits.min() > 750 and hits.max() < 1050


def test_size_balanced_length_seed_and_epochs() -> None:
    labels = _labels()
    first, again = SizeBalancedSampler(labels, seed=1), SizeBalancedSampler(labels, seed=1)
    assert len(first) == len(labels)
    epoch0 = list(first)
    assert epoch0 == list(again)
    epoch1 = list(first)
    assert epoch1 != epoch0
    first.set_epoch(1)
    assert list(first) == epoch1
    assert all(0 <= i < len(labels) for i in epoch0)


def test_size_balanced_rejects_unknown_labels() -> None:
    with pytest.raises(InputError, match="covid_medium"):
        SizeBalancedSampler(["covid_small", "covid_medium"], seed=0)


def test_size_balanced_needs_all_four_groups() -> None:
    with pytest.raises(InputError, match="cap_large"):
        SizeBalancedSampler(["covid_small", "covid_large", "cap_small"], seed=0)


@pytest.mark.parametrize("n_scans", [1, 7, 50])
def test_uniform_visits_every_scan_once(n_scans: int) -> None:
    sampler = UniformSampler(n_scans, seed=11)
    epoch0, epoch1 = list(sampler), list(sampler)
    assert sorted(epoch0) == list(range(n_scans)) == sorted(epoch1)
    assert len(sampler) == n_scans
    if n_scans == 50:
        assert epoch0 != epoch1
    assert list(UniformSampler(n_scans, seed=11)) == epoch0


def test_samplers_drive_a_dataloader() -> None:
    loader = DataLoader(list(range(12)), sampler=UniformSampler(12, seed=0), batch_size=5)
    batches = [batch.tolist() for batch in loader]
    assert [len(b) for b in batches] == [5, 5, 2]
    assert sorted(sum(batches, [])) == list(range(12))


def test_size_balanced_draws_pass_a_chi_square_test_against_w() -> None:
    # W = [1.5, 1, 1, 1.5]; 20 seeded epochs of 500 draws each, pooled.
    labels = np.array(_labels())
    sampler = SizeBalancedSampler(labels, seed=2020, num_samples=500)
    drawn = labels[np.concatenate([np.fromiter(iter(sampler), dtype=np.int64)
                                   for _ in range(20)])]
    observed = np.array([np.sum(drawn == group) for group in SAMPLING_GROUPS])
    expected = drawn.size * np.array([1.5, 1.0, 1.0, 1.5]) / 5.0
    assert chisquare(observed, expected).pvalue > 0.01
    # The test has power: the same draws clearly fail against the groups' plain shares.
    shares = drawn.size * np.array([10, 15, 30, 20]) / 75.0
    assert chisquare(observed, shares).pvalue < 1e-6


@pytest.mark.parametrize("empty", SAMPLING_GROUPS)
def test_empty_group_error_names_the_fold_and_the_group(empty: str) -> None:
    counts = {group: 5 for group in SAMPLING_GROUPS}
    counts[empty] = 0
    with pytest.raises(InputError, match=f"fold 3: .*{empty}") as caught:
        size_balanced_weights(counts, fold=3)
    assert caught.value.reason == "empty_group"
    labels = [group for group in SAMPLING_GROUPS if group != empty for _ in range(2)]
    with pytest.raises(InputError, match=f"fold b: .*{empty}"):
        SizeBalancedSampler(labels, seed=0, fold="b")
