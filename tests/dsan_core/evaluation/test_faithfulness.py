from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dsan_core.errors import InputError
from dsan_core.evaluation.faithfulness import (
    FAITHFULNESS_COLUMNS,
    faithfulness_table,
    score_attention,
)
from tests.dsan_core.evaluation import cohort


@pytest.mark.parametrize(
    ("attention", "mask", "mass", "hit"),
    [
        # Mass 3 + 4 of 8 inside; the maximum (4) is inside.
        ([[1, 3], [0, 4]], [[0, 1], [0, 1]], 7 / 8, 1.0),
        # The maximum (4) is outside; 3 of 8 inside.
        ([[1, 3], [0, 4]], [[0, 1], [0, 0]], 3 / 8, 0.0),
        # A plateau of two maxima, one inside: half a hit.
        ([[2, 2], [0, 1]], [[1, 0], [0, 0]], 2 / 5, 0.5),
    ],
)
def test_hand_cases(attention: list[list[float]], mask: list[list[int]], mass: float,
                    hit: float) -> None:
    score = score_attention(np.array([attention], dtype=float), np.array([mask]))
    assert score.mass_inside == pytest.approx(mass)
    assert score.pointing_hit == hit


@pytest.mark.parametrize(
    ("attention", "mask"),
    [([[1.0, 2.0]], [[0, 0]]), ([[0.0, 0.0]], [[1, 0]])],
)
def test_undefined_scores_are_nan(attention: list[list[float]], mask: list[list[int]]) -> None:
    score = score_attention(np.array([attention]), np.array([mask]))
    assert math.isnan(score.mass_inside) and math.isnan(score.pointing_hit)


@pytest.mark.parametrize(
    ("attention", "mask", "message"),
    [
        (np.ones((1, 2, 2)), np.ones((1, 2, 3)), "one \\(z, y, x\\) shape"),
        (np.ones((2, 2)), np.ones((2, 2)), "one \\(z, y, x\\) shape"),
        (-np.ones((1, 2, 2)), np.ones((1, 2, 2)), "non-negative"),
    ],
)
def test_bad_maps_are_input_errors(attention: np.ndarray, mask: np.ndarray,
                                   message: str) -> None:
    with pytest.raises(InputError, match=f"scan x0: .*{message}"):
        score_attention(attention, mask, scan="x0")


def test_a_uniform_map_over_the_lung_scores_the_lesions_share_of_the_lung() -> None:
    # Lung: 8 voxels of a 2x3x3 grid; infection: 2 of them plus 1 outside the lung (which
    # does not count). A uniform map inside the lung and anything outside it.
    lung = np.zeros((2, 3, 3), dtype=np.uint8)
    lung[0, :2, :2] = 1
    lung[1, :2, :2] = 1
    infection = np.zeros_like(lung)
    infection[0, 0, :2] = 1
    infection[1, 2, 2] = 1  # outside the lung
    attention = np.where(lung == 1, 0.3, 0.0)
    attention[1, 2, 2] = 5.0  # mass outside the lung is ignored
    score = score_attention(attention, infection, lung)
    assert score.chance == pytest.approx(2 / 8)
    assert score.mass_inside == pytest.approx(2 / 8)
    assert score.lift == pytest.approx(1.0)
    # Every lung voxel is maximal: the pointing game scores the same share.
    assert score.pointing_hit == pytest.approx(2 / 8)


def test_a_map_on_the_lesion_lifts_above_chance() -> None:
    lung = np.ones((1, 2, 2), dtype=np.uint8)
    infection = np.array([[[1, 0], [0, 0]]])
    score = score_attention(np.array([[[3.0, 1.0], [0.0, 0.0]]]), infection, lung)
    assert (score.mass_inside, score.chance, score.lift) == pytest.approx((0.75, 0.25, 3.0))


def test_table_aggregates_per_model_and_bin_over_defined_scores() -> None:
    # x0 is in bin '>0.030', x1 in '0.005-0.030'.
    scores = pd.DataFrame({
        "scan_id": ["x0", "x1", "x0", "x1", "x1"],
        "model": ["att_us", "att_us", "rn34_us", "rn34_us", "rn34_us"],
        "fold": [0, 0, 0, 0, 1],
        "mass_inside": [0.8, 0.6, 0.2, np.nan, 0.4],
        "pointing_hit": [1.0, 0.0, 0.0, np.nan, 0.5],
        "chance": [0.2, 0.1, 0.2, np.nan, 0.1],
        "lift": [4.0, 6.0, 1.0, np.nan, 4.0],
        "deletion_drop": [0.3, 0.1, np.nan, 0.0, 0.2],
        "random_drop": [0.1, 0.0, np.nan, 0.0, 0.1],
    })
    table = faithfulness_table(scores, cohort.groups())
    assert tuple(table.columns) == FAITHFULNESS_COLUMNS
    assert list(table["model"].unique()) == ["rn34_us", "att_us"]
    by = table.set_index(["model", "bin"])
    assert by.loc[("att_us", "all"), "n_maps"] == 2
    assert by.loc[("att_us", "all"), "mass_inside_mean"] == pytest.approx(0.7)
    assert by.loc[("att_us", "all"), "mass_inside_std"] == pytest.approx(np.std([0.8, 0.6],
                                                                                ddof=1))
    assert by.loc[("att_us", "all"), "pointing_rate"] == pytest.approx(0.5)
    assert by.loc[("rn34_us", "all"), "n_maps"] == 2
    assert by.loc[("rn34_us", "0.005-0.030"), "mass_inside_mean"] == pytest.approx(0.4)
    assert by.loc[("rn34_us", "<0.005"), "n_maps"] == 0
    assert math.isnan(by.loc[("rn34_us", "<0.005"), "pointing_rate"])
    assert by.loc[("att_us", "all"), "chance_mean"] == pytest.approx(0.15)
    assert by.loc[("att_us", "all"), "lift_mean"] == pytest.approx(5.0)
    # Deletion: the maps with both drops defined (rn34_us fold 0 on x0 has neither).
    assert by.loc[("rn34_us", "all"), "n_deletions"] == 2
    assert by.loc[("rn34_us", "all"), "deletion_drop_mean"] == pytest.approx(0.1)
    assert by.loc[("rn34_us", "all"), "random_drop_mean"] == pytest.approx(0.05)
