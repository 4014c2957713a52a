"""Picking scans for review, the uncertainty score and what a review changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsan_core.errors import InputError
from dsan_core.segmentation.review import (
    compare_review,
    pick_for_review,
    predictive_entropy,
    review_counts,
    review_score,
)


def test_entropy_is_zero_when_certain_and_one_when_uniform() -> None:
    probs = torch.zeros(3, 1, 1, 2)
    probs[1, 0, 0, 0] = 1.0
    probs[:, 0, 0, 1] = 1 / 3
    entropy = predictive_entropy(probs)
    assert entropy[0, 0, 0] == pytest.approx(0.0, abs=1e-6)
    assert entropy[0, 0, 1] == pytest.approx(1.0, abs=1e-6)


def _scan(unsure: float) -> torch.Tensor:
    """A 1x2x2 scan: two lung voxels, one certain and one with `unsure` lung/infection."""
    probs = torch.zeros(3, 1, 2, 2)
    probs[0, 0, 1] = 1.0  # background row
    probs[1, 0, 0, 0] = 1.0
    probs[1, 0, 0, 1], probs[2, 0, 0, 1] = 1 - unsure, unsure
    return probs


def test_export_picks_the_scans_the_segmenter_is_least_sure_of() -> None:
    lung = np.array([[[1, 1], [0, 0]]], dtype=np.uint8)
    scores = {scan: review_score(_scan(p), lung)
              for scan, p in {"X-a": 0.0, "X-b": 0.5, "X-c": 0.2, "X-d": 0.45}.items()}
    # Mean entropy over the two lung voxels (the background voxels do not count).
    assert scores["X-a"] == pytest.approx(0.0, abs=1e-6)
    assert scores["X-b"] == pytest.approx(np.log(2) / np.log(3) / 2, rel=1e-5)
    assert pick_for_review(scores, 2, "uncertainty") == ["X-b", "X-d"]
    assert pick_for_review(scores, 10, "uncertainty") == ["X-b", "X-d", "X-c", "X-a"]
    # No lung found: as unsure as can be.
    assert review_score(_scan(0.1), np.zeros((1, 2, 2), dtype=np.uint8)) == 1.0
    with pytest.raises(InputError, match="expected a lung mask of shape"):
        review_score(_scan(0.1), np.zeros((2, 2, 2), dtype=np.uint8))


def test_random_is_a_seeded_draw_and_ties_break_by_id() -> None:
    scores = {f"X-{i}": 0.5 for i in range(10)}
    assert pick_for_review(scores, 3, "uncertainty") == ["X-0", "X-1", "X-2"]
    first = pick_for_review(scores, 4, "random", seed=3)
    assert first == pick_for_review(scores, 4, "random", seed=3)
    assert first != pick_for_review(scores, 4, "random", seed=4)
    assert len(set(first)) == 4
    with pytest.raises(InputError):
        pick_for_review(scores, 0, "random")


def test_compare_review_counts_changed_voxels() -> None:
    lung = np.zeros((2, 4, 4), dtype=np.uint8)
    lung[:, 1:3, 1:3] = 1
    infection = np.zeros_like(lung)
    corrected_inf = infection.copy()
    corrected_inf[0, 1, 1] = 1  # one lung voxel becomes infection
    corrected_lung = lung.copy()
    corrected_lung[1, 0, 0] = 1  # one background voxel becomes lung
    change = compare_review((lung, infection), (corrected_lung, corrected_inf))
    assert change.voxels_changed == 2
    assert change.lung_dice == pytest.approx(2 * 8 / (8 + 9))
    assert change.infection_dice == 0.0
    assert compare_review((lung, infection), (lung, infection)).voxels_changed == 0


def test_review_counts_each_scan_once() -> None:
    counts = review_counts(["a", "b", "c", "d", "e"], ingested={"a", "b"}, reviewed={"b", "c"},
                           proposed={"c", "d"})
    assert counts == {"scans": 5, "reviewed": 2, "ground_truth": 1, "proposed": 1,
                      "never_seen": 1}
