"""Evaluation figures: ROC curves (paper Fig. 4), attention panels (Fig. 5 style), the
ensemble weight surface and reliability diagrams.

Volumes are (z, y, x); spacing (x, y, z) mm. Tables follow `dsan_core.evaluation`
(predictions, groups, the reliability table); every function returns a Figure with an
Agg canvas and touches no pyplot state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dsan_core.ensemble import PAPER_WEIGHTS, EnsembleSearch
from dsan_core.errors import InputError
from dsan_core.groups import ANALYSIS_BINS, LABEL_COVID
from dsan_core.plots.canvas import new_figure
from dsan_core.prediction_table import (
    BASELINES,
    MODEL_NAMES,
    SET_TEST,
    SET_VAL,
    labelled_predictions,
    ordered_models,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_COLOURS = ("tab:gray", "tab:blue", "tab:orange", "tab:red", "tab:pink", "tab:green",
            "tab:purple", "tab:brown", "tab:olive", "tab:cyan")


def _roc_panel(axes: Axes, rows: pd.DataFrame, models: list[str], title: str,
               per_fold: bool) -> None:
    from sklearn.metrics import roc_auc_score, roc_curve

    for colour, model in zip(_COLOURS, models, strict=False):
        part = rows.loc[rows["branch"] == model]
        y, p = part["y"].to_numpy(), part["probability"].to_numpy()
        if part.empty or y.min() == y.max():
            continue
        if per_fold:
            for _, fold_rows in part.groupby("fold"):
                fy = fold_rows["y"].to_numpy()
                if fy.min() != fy.max():
                    fpr, tpr, _ = roc_curve(fy, fold_rows["probability"].to_numpy())
                    axes.plot(fpr, tpr, color=colour, linewidth=0.6, alpha=0.35)
        fpr, tpr, _ = roc_curve(y, p)
        axes.plot(fpr, tpr, color=colour, linewidth=1.5,
                  linestyle="--" if model in BASELINES else "-",
                  label=f"{MODEL_NAMES.get(model, model)} ({roc_auc_score(y, p):.3f})")
    axes.plot([0, 1], [0, 1], color="black", linestyle=":", linewidth=0.8)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_aspect("equal")
    axes.set_xlabel("1 - specificity")
    axes.set_ylabel("sensitivity")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7, loc="lower right", title="AUC", title_fontsize=7)


def roc_figure(predictions: pd.DataFrame, groups: pd.DataFrame) -> Figure:
    """Paper Fig. 4: (A) TV, the validation folds pooled (thin lines: each validation
    fold); (B...) the test set scored by each fold's model. One curve per model, AUC in
    the legend."""
    rows = labelled_predictions(predictions, groups)
    models = ordered_models(rows["branch"])
    test = rows.loc[rows["set"] == SET_TEST]
    folds = sorted(int(f) for f in test["fold"].unique())
    n_panels = 1 + len(folds)
    n_cols = min(3, n_panels)
    n_rows = -(-n_panels // n_cols)
    figure = new_figure(4.0 * n_cols, 4.0 * n_rows)
    grid = figure.subplots(n_rows, n_cols, squeeze=False).ravel()
    _roc_panel(grid[0], rows.loc[rows["set"] == SET_VAL], models,
               "TV: validation folds pooled", per_fold=True)
    for axes, fold in zip(grid[1:], folds, strict=False):
        _roc_panel(axes, test.loc[test["fold"] == fold], models,
                   f"Test: model of fold {fold + 1}", per_fold=False)
    for axes in grid[n_panels:]:
        axes.set_axis_off()
    return figure


@dataclass(frozen=True)
class AttentionCase:
    """One COVID test scan for the attention panel. Arrays (z, y, x) on one grid: `ct`
    the network input (windowed to [0, 1] by default; see `ct_window`), masks 0/1,
    maps >= 0 (Grad-CAM of rn34_us, attention of att_us and att_ss)."""

    scan_id: str
    analysis_bin: str
    ct: np.ndarray
    lung: np.ndarray
    infection: np.ndarray
    grad_cam: np.ndarray
    attention_us: np.ndarray
    attention_ss: np.ndarray
    spacing: tuple[float, float, float]
    ct_window: tuple[float, float] = (0.0, 1.0)


def _infection_centre(case: AttentionCase) -> tuple[int, int]:
    """(z, y) through the infection's centroid (else the lung's, else the volume's)."""
    for mask in (case.infection, case.lung):
        if np.any(mask):
            z, y, _ = np.argwhere(mask).mean(axis=0).round().astype(int)
            return int(z), int(y)
    return case.ct.shape[0] // 2, case.ct.shape[1] // 2


def attention_panel_figure(cases: Sequence[AttentionCase]) -> Figure:
    """Fig. 5 style: per case an axial and a coronal row through the infection's centre;
    columns CT, lung mask, infection mask, Grad-CAM (RN34 + US), attention (US, SS)."""
    if not cases:
        raise InputError("expected at least one case for the attention panel, found none")
    titles = ("CT", "lung mask", "infection mask", "Grad-CAM RN34 + US", "attention US",
              "attention SS")
    figure = new_figure(2.2 * len(titles), 2.3 * 2 * len(cases))
    grid = figure.subplots(2 * len(cases), len(titles), squeeze=False)
    for index, case in enumerate(cases):
        arrays = (case.ct, case.lung, case.infection, case.grad_cam, case.attention_us,
                  case.attention_ss)
        if any(a.shape != case.ct.shape or a.ndim != 3 for a in arrays):
            raise InputError(f"expected CT, masks and maps of one (z, y, x) shape, found "
                             f"{[a.shape for a in arrays]}", scan=case.scan_id)
        sx, sy, sz = case.spacing
        z, y = _infection_centre(case)
        views = (("axial", lambda a, z=z: a[z], sy / sx),
                 ("coronal", lambda a, y=y: a[::-1, y, :], sz / sx))
        for row, (view, cut, aspect) in enumerate(views):
            axes_row = grid[2 * index + row]
            ct = cut(case.ct)
            for column, (axes, array, title) in enumerate(zip(axes_row, arrays, titles,
                                                              strict=True)):
                axes.imshow(ct, cmap="gray", vmin=case.ct_window[0], vmax=case.ct_window[1],
                            aspect=aspect, interpolation="nearest")
                if column in (1, 2):
                    overlay = np.ma.masked_equal(cut(array).astype(float), 0.0)
                    axes.imshow(overlay, cmap="autumn" if column == 2 else "summer",
                                alpha=0.5, aspect=aspect, interpolation="nearest")
                elif column >= 3:
                    axes.imshow(cut(array), cmap="jet", alpha=0.45, vmin=0.0,
                                vmax=max(float(array.max()), 1e-12), aspect=aspect,
                                interpolation="bilinear")
                axes.set_axis_off()
                if index == 0 and row == 0:
                    axes.set_title(title, fontsize=8)
            axes_row[0].text(0.02, 0.98, f"{case.scan_id[:10]} {case.analysis_bin}\n{view}",
                             transform=axes_row[0].transAxes, fontsize=6, color="yellow",
                             va="top")
    return figure


def select_figure_scans(groups: pd.DataFrame, test_scan_ids: Sequence[str],
                        per_bin: int) -> list[str]:
    """Up to `per_bin` COVID test scans per analysis bin, those whose infection ratio is
    closest to the bin's median (ties by scan_id), in bin order: typical, reproducible."""
    for column in ("scan_id", "label", "infection_ratio", "analysis_bin"):
        if column not in groups.columns:
            raise InputError(f"expected column {column!r} in the groups table, found "
                             f"{list(groups.columns)}")
    covid = groups.loc[(groups["label"].astype(str) == LABEL_COVID)
                       & groups["scan_id"].astype(str).isin(set(test_scan_ids))]
    chosen: list[str] = []
    for bin_name in ANALYSIS_BINS:
        part = covid.loc[covid["analysis_bin"].astype(str) == bin_name]
        if part.empty:
            continue
        distance = (part["infection_ratio"] - part["infection_ratio"].median()).abs()
        ranked = part.assign(distance=distance, sid=part["scan_id"].astype(str))
        chosen += ranked.sort_values(["distance", "sid"])["sid"].head(per_bin).tolist()
    return chosen


def ensemble_surface_figure(search: EnsembleSearch) -> Figure:
    """The search's objective over (w_middle, w_extreme), the paper's point (star) and
    the chosen point (circle) marked."""
    surface = search.surface.pivot(index="w_extreme", columns="w_middle", values="objective")
    figure = new_figure(6.0, 5.0)
    axes = figure.add_subplot()
    x, y = surface.columns.to_numpy(float), surface.index.to_numpy(float)
    half = (x[1] - x[0]) / 2 if x.size > 1 else 0.5
    image = axes.imshow(surface.to_numpy(float), origin="lower", cmap="viridis",
                        extent=(x[0] - half, x[-1] + half, y[0] - half, y[-1] + half),
                        aspect="equal", interpolation="nearest")
    figure.colorbar(image, ax=axes, label=f"TV {search.objective}")
    axes.plot(PAPER_WEIGHTS[1], PAPER_WEIGHTS[0], marker="*", markersize=14, color="white",
              markeredgecolor="black", linestyle="none",
              label=f"paper ({PAPER_WEIGHTS[0]}, {PAPER_WEIGHTS[1]}): {search.paper_value:.4f}")
    w = search.weights
    axes.plot(w.w_middle, w.w_extreme, marker="o", markersize=9, markerfacecolor="none",
              markeredgecolor="red", markeredgewidth=2, linestyle="none",
              label=f"chosen ({w.w_extreme:.2f}, {w.w_middle:.2f}): {search.value:.4f}")
    axes.set_xlabel("w_middle (weight of US, middle band)")
    axes.set_ylabel("w_extreme (weight of US, extreme band)")
    axes.set_title("Ensemble weight search (TV out-of-fold)")
    axes.legend(fontsize=8, loc="lower left")
    return figure


def reliability_figure(reliability: pd.DataFrame) -> Figure:
    """Reliability diagrams, one panel per model: each test fold model (thin) and the TV
    pooled predictions (dashed); the diagonal is perfect calibration."""
    needed = ("model", "set", "fold", "mean_predicted", "fraction_covid", "n_scans")
    missing = [c for c in needed if c not in reliability.columns]
    if missing:
        raise InputError(f"expected reliability columns {list(needed)}, missing {missing}")
    models = ordered_models(reliability["model"])
    if not models:
        raise InputError("expected reliability rows, found none")
    figure = new_figure(3.2 * len(models), 3.4)
    panels = figure.subplots(1, len(models), squeeze=False)[0]
    for axes, model in zip(panels, models, strict=True):
        part = reliability.loc[(reliability["model"] == model) & (reliability["n_scans"] > 0)]
        tv = part.loc[part["set"] == "tv"]
        if not tv.empty:
            axes.plot(tv["mean_predicted"], tv["fraction_covid"], marker=".", linewidth=1.5,
                      linestyle="--", color="black", label="TV pooled")
        test = part.loc[part["set"] == SET_TEST]
        for fold in sorted(int(f) for f in test["fold"].dropna().unique()):
            curve = test.loc[test["fold"] == fold]
            axes.plot(curve["mean_predicted"], curve["fraction_covid"], marker=".",
                      linewidth=0.8, label=f"test fold {fold + 1}")
        axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        axes.set_aspect("equal")
        axes.set_xlabel("mean P(COVID)")
        axes.set_ylabel("fraction COVID")
        axes.set_title(MODEL_NAMES.get(model, model), fontsize=9)
        axes.legend(fontsize=6, loc="upper left")
    return figure
