from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from dsan_core.errors import InputError
from dsan_core.plots.training import training_curves_figure


def _history() -> pd.DataFrame:
    rows = []
    for branch, auc in (("att_us", 0.8), ("att_ss", 0.7), ("rn34_us", math.nan)):
        for epoch in (1, 2, 3):
            rows.append({"branch": branch, "epoch": epoch, "loss": 1.0 / epoch,
                         "select_loss": 0.9 / epoch, "select_auc": auc + 0.05 * epoch,
                         "best_epoch": 3 if branch != "rn34_us" else 1})
    return pd.DataFrame(rows)


def test_training_curves_has_a_line_per_branch_and_saves(tmp_path: Path) -> None:
    figure = training_curves_figure(_history(), fold=2)
    loss_axes, auc_axes = figure.axes
    assert len(loss_axes.get_lines()) == 6  # train and validation loss per branch
    labels = [line.get_label() for line in auc_axes.get_lines()]
    assert {"Attention RN34 + US", "Attention RN34 + SS", "RN34 + US"} <= set(labels)
    assert figure.get_suptitle() == "Classifier training, fold 2"
    figure.savefig(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_training_curves_needs_its_columns() -> None:
    with pytest.raises(InputError, match="select_auc"):
        training_curves_figure(_history().drop(columns="select_auc"))
