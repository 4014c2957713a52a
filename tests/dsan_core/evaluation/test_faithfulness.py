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


def test_table_aggregates_per_model_and_bin_over_defined_scores() -> None:
    # x0 is in bin '>0.030', x1 in '0.005-0.030'.
    scores = pd.DataFrame({
        "scan_id": ["x0", "x1", "x0", "x1", "x1"],
        "model": ["att_us", "att_us", "rn34_us", "rn34_us", "rn34_us"],
        "fold": [0, 0, 0, 0, 1],
        "mass_inside": [0.8, 0.6, 0.2, np.nan, 0.4],
        "pointing_hit": [1.0, 0.0, 0.0, np.nan, 0.5],
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
