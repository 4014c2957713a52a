from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dsan_core.config import GroupsConfig
from dsan_core.errors import InputError
from dsan_core.groups import (
    ANALYSIS_BINS,
    LABEL_CAP,
    LABEL_COVID,
    SAMPLING_GROUPS,
    assign_groups,
)
from dsan_core.plots import ratio_histogram_figure


def _one(label: str, ratio: float) -> pd.Series:
    df = pd.DataFrame({"scan_id": ["s1"], "label": [label], "infection_ratio": [ratio]})
    return assign_groups(df, GroupsConfig()).iloc[0]


@pytest.mark.parametrize(
    ("label", "ratio", "group"),
    [
        (LABEL_COVID, 0.0, "covid_small"),
        (LABEL_COVID, 0.0299999, "covid_small"),
        (LABEL_COVID, 0.030, "covid_large"),
        (LABEL_COVID, 0.5, "covid_large"),
        (LABEL_CAP, 0.0, "cap_small"),
        (LABEL_CAP, 0.001, "cap_small"),
        (LABEL_CAP, 0.0010001, "cap_large"),
        (LABEL_CAP, 0.030, "cap_large"),
    ],
)
def test_sampling_group_boundaries(label: str, ratio: float, group: str) -> None:
    assert _one(label, ratio)["sampling_group"] == group


@pytest.mark.parametrize(
    ("ratio", "analysis_bin"),
    [
        (0.0, "<0.005"),
        (0.0049999, "<0.005"),
        (0.005, "0.005-0.030"),
        (0.030, "0.005-0.030"),
        (0.0300001, ">0.030"),
    ],
)
def test_analysis_bin_boundaries(ratio: float, analysis_bin: str) -> None:
    assert _one(LABEL_COVID, ratio)["analysis_bin"] == analysis_bin


@pytest.mark.parametrize(
    ("ratio", "band"),
    [
        (0.0, "extreme"),
        (0.0009999, "extreme"),
        (0.001, "middle"),
        (0.005, "middle"),
        (0.030, "middle"),
        (0.0300001, "extreme"),
    ],
)
def test_ensemble_band_boundaries(ratio: float, band: str) -> None:
    assert _one(LABEL_CAP, ratio)["ensemble_band"] == band


def test_columns_are_categorical_and_input_is_not_modified() -> None:
    df = pd.DataFrame(
        {"scan_id": ["a", "b"], "label": ["COVID", "CAP"], "infection_ratio": [0.1, 0.0]}
    )
    out = assign_groups(df, GroupsConfig())
    assert list(df.columns) == ["scan_id", "label", "infection_ratio"]
    assert list(out["sampling_group"].cat.categories) == list(SAMPLING_GROUPS)
    assert list(out["analysis_bin"].cat.categories) == list(ANALYSIS_BINS)
    assert list(out["sampling_group"]) == ["covid_large", "cap_small"]


def test_config_edges_are_used() -> None:
    df = pd.DataFrame({"scan_id": ["a"], "label": ["COVID"], "infection_ratio": [0.02]})
    out = assign_groups(df, GroupsConfig(covid_small_below=0.01))
    assert out.loc[0, "sampling_group"] == "covid_large"


@pytest.mark.parametrize(
    ("label", "ratio", "message"),
    [("covid", 0.1, "expected labels"), ("CAP", 1.5, r"\[0, 1\]"), ("CAP", np.nan, r"\[0, 1\]")],
)
def test_bad_rows_are_refused_by_scan_id(label: str, ratio: float, message: str) -> None:
    df = pd.DataFrame({"scan_id": ["s-9"], "label": [label], "infection_ratio": [ratio]})
    with pytest.raises(InputError, match=f"scan s-9: .*{message}"):
        assign_groups(df, GroupsConfig())


def test_missing_column_is_refused() -> None:
    with pytest.raises(InputError, match="missing"):
        assign_groups(pd.DataFrame({"scan_id": ["a"], "label": ["CAP"]}), GroupsConfig())


def test_ratio_histogram_counts_zero_ratios_in_their_own_bar() -> None:
    df = pd.DataFrame(
        {"label": ["COVID", "COVID", "CAP", "CAP", "CAP"],
         "infection_ratio": [0.05, 0.2, 0.0, 0.0, 0.002]}
    )
    figure = ratio_histogram_figure(df)
    axes = figure.axes[0]
    assert axes.get_xscale() == "log"
    bar_heights = sorted(p.get_height() for p in axes.patches if p.get_height() > 0)
    assert 2.0 in bar_heights  # the two CAP zeros
    assert sum(bar_heights) == pytest.approx(5.0)
