"""Classifier training curves for one fold: loss and inner-validation AUC per epoch, per
branch.

The input is the epoch history as a table: one row per (branch, epoch) with the
`ClassifierEpochReport` fields (at least branch, epoch, loss, select_auc; select_loss
and best_epoch are drawn when present). select_* are scores on the inner validation
split of the training folds that chooses the kept epoch (NaN with a fixed epoch count):
never the fold's own validation scans, whose predictions are the reported out-of-fold
set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dsan_core.branches import ATT_SS, ATT_US, MODEL_NAMES, RN34_US
from dsan_core.errors import InputError
from dsan_core.plots.canvas import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

REQUIRED_COLUMNS: tuple[str, ...] = ("branch", "epoch", "loss", "select_auc")
#: The paper's names and one colour per branch; other branches get matplotlib's cycle.
BRANCH_STYLE: dict[str, tuple[str, str]] = {
    ATT_US: (MODEL_NAMES[ATT_US], "tab:red"),
    ATT_SS: (MODEL_NAMES[ATT_SS], "tab:blue"),
    RN34_US: (MODEL_NAMES[RN34_US], "tab:gray"),
}


def training_curves_figure(history: pd.DataFrame, *, fold: str | int | None = None) -> Figure:
    """Two panels: training loss (solid) and inner-validation BCE (dashed) per epoch, and
    the inner-validation AUC per epoch with each branch's kept epoch circled."""
    missing = [c for c in REQUIRED_COLUMNS if c not in history.columns]
    if missing:
        raise InputError(f"expected columns {list(REQUIRED_COLUMNS)} in the training history, "
                         f"missing {missing}")
    figure = new_figure(10.0, 4.0)
    loss_axes, auc_axes = figure.subplots(1, 2)
    for index, (branch, rows) in enumerate(history.groupby("branch", sort=True)):
        rows = rows.sort_values("epoch")
        name, colour = BRANCH_STYLE.get(str(branch), (str(branch), f"C{index}"))
        epochs = rows["epoch"].to_numpy()
        loss_axes.plot(epochs, rows["loss"], color=colour, marker=".", label=f"{name} train")
        if "select_loss" in rows and rows["select_loss"].notna().any():
            loss_axes.plot(epochs, rows["select_loss"], color=colour, linestyle="--",
                           label=f"{name} inner val (BCE)")
        auc_axes.plot(epochs, rows["select_auc"], color=colour, marker=".", label=name)
        if "best_epoch" in rows and len(rows):
            best = int(rows["best_epoch"].iloc[-1])
            kept = rows.loc[rows["epoch"] == best, "select_auc"]
            if len(kept) and np.isfinite(kept.iloc[0]):
                auc_axes.plot([best], [kept.iloc[0]], marker="o", markersize=10,
                              markerfacecolor="none", color=colour)
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("loss")
    loss_axes.set_title("Loss (train: BCE + lambda L_ex)")
    auc_axes.set_xlabel("epoch")
    auc_axes.set_ylabel("inner validation AUC")
    auc_axes.set_title("Inner validation AUC (circle: kept epoch; empty: fixed epochs)")
    for axes in (loss_axes, auc_axes):
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
    figure.suptitle("Classifier training" + ("" if fold is None else f", fold {fold}"))
    return figure
