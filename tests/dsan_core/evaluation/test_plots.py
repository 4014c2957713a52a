from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from dsan_core.config import EnsembleConfig
from dsan_core.ensemble import search_ensemble_weights
from dsan_core.errors import InputError
from dsan_core.evaluation.tables import reliability_tables
from dsan_core.plots.evaluation import (
    AttentionCase,
    attention_panel_figure,
    ensemble_surface_figure,
    reliability_figure,
    roc_figure,
    select_figure_scans,
)
from tests.dsan_core.evaluation import cohort


def _visible_axes(figure: Figure) -> int:
    return sum(axes.get_visible() and axes.axison for axes in figure.axes)


def test_roc_figure_has_a_tv_panel_and_one_per_test_fold() -> None:
    figure = roc_figure(cohort.predictions(), cohort.groups())
    assert _visible_axes(figure) == 1 + 2
    titles = [axes.get_title() for axes in figure.axes]
    assert titles[:3] == ["TV: validation folds pooled", "Test: model of fold 1",
                          "Test: model of fold 2"]


def test_reliability_figure_one_panel_per_model() -> None:
    table = reliability_tables(cohort.predictions(), cohort.groups(), n_bins=4)
    assert len(reliability_figure(table).axes) == 2


def test_ensemble_surface_marks_the_paper_and_chosen_points() -> None:
    predictions = cohort.predictions()
    ss = predictions.loc[predictions["branch"] == "att_us"].assign(branch="att_ss")
    search = search_ensemble_weights(pd.concat([predictions, ss]), cohort.groups(),
                                     EnsembleConfig(search_step=0.25))
    figure = ensemble_surface_figure(search)
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert labels[0].startswith("paper (0.35, 0.96)") and labels[1].startswith("chosen")


def _case(scan: str) -> AttentionCase:
    volume = np.zeros((6, 8, 8))
    infection = volume.copy()
    infection[2:4, 3:5, 3:5] = 1
    return AttentionCase(scan, ">0.030", volume + 0.5, np.ones_like(volume), infection,
                         infection * 0.5, infection, volume, (1.0, 1.0, 2.0))


def test_attention_panel_has_axial_and_coronal_rows_per_case() -> None:
    figure = attention_panel_figure([_case("x0"), _case("x1")])
    assert len(figure.axes) == 2 * 2 * 6
    assert [axes.get_title() for axes in figure.axes[:6]] == [
        "CT", "lung mask", "infection mask", "Grad-CAM RN34 + US", "attention US",
        "attention SS"]


def test_attention_panel_rejects_mismatched_arrays() -> None:
    case = _case("x0")
    bad = AttentionCase(**{**case.__dict__, "grad_cam": np.zeros((6, 8, 7))})
    with pytest.raises(InputError, match="scan x0"):
        attention_panel_figure([bad])


def test_figure_scans_are_covid_test_scans_nearest_each_bins_median() -> None:
    groups = cohort.groups()
    assert select_figure_scans(groups, cohort.TEST, per_bin=2) == ["x1", "x0"]
    assert select_figure_scans(groups, ["x0"], per_bin=2) == ["x0"]
