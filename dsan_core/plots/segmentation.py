"""Segmentation figures: the infection-ratio histogram (paper Fig. 1) and mask overlays.

Volumes are (z, y, x) HU; masks (z, y, x) 0/1; spacing (x, y, z) mm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dsan_core.config import CT_WINDOW_LEVEL, CT_WINDOW_WIDTH, RATIO_LARGE, RATIO_SMALL, RATIO_TINY
from dsan_core.errors import InputError
from dsan_core.plots.canvas import new_figure
from dsan_core.preprocessing.intensity import window_bounds

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Ratios below this are drawn in the "zero" bar (log axes cannot show 0).
ZERO_RATIO = 1e-5
_COLOURS = {"COVID": "tab:red", "CAP": "tab:blue"}


def ratio_histogram_figure(df: pd.DataFrame, *, bins: int = 30) -> Figure:
    """Per-class histogram of `infection_ratio` on a log x-axis (`label` names the class).

    Ratios below ZERO_RATIO (including exact zeros) are counted in a separate bar
    at the left, labelled with its count, since a log axis cannot show them.
    """
    for column in ("label", "infection_ratio"):
        if column not in df.columns:
            raise InputError(f"expected column {column!r} in the ratio table, found "
                             f"{list(df.columns)}")
    figure = new_figure(7.0, 4.0)
    axes = figure.add_subplot()
    ratios = df["infection_ratio"].to_numpy(dtype=float)
    positive = ratios[ratios >= ZERO_RATIO]
    top = max(1.0, float(positive.max()) if positive.size else 1.0)
    edges = np.logspace(np.log10(ZERO_RATIO), np.log10(top), bins + 1)
    zero_x = ZERO_RATIO / 3
    for label in sorted(df["label"].astype(str).unique()):
        values = df.loc[df["label"] == label, "infection_ratio"].to_numpy(dtype=float)
        colour = _COLOURS.get(label)
        axes.hist(values[values >= ZERO_RATIO], bins=list(edges), alpha=0.5, color=colour,
                  label=f"{label} (n={values.size})")
        n_zero = int((values < ZERO_RATIO).sum())
        axes.bar(zero_x, n_zero, width=zero_x * 0.8, alpha=0.5, color=colour)
    axes.set_xscale("log")
    axes.axvline(ZERO_RATIO, color="grey", linewidth=0.8)
    for edge in (RATIO_TINY, RATIO_SMALL, RATIO_LARGE):
        axes.axvline(edge, color="black", linestyle=":", linewidth=0.8)
    axes.set_xlabel(f"infection ratio (left bar: < {ZERO_RATIO:g}, incl. 0)")
    axes.set_ylabel("scans")
    axes.set_title("Infection ratio by class")
    axes.legend()
    return figure


def _centre(lung: np.ndarray, infection: np.ndarray) -> tuple[int, int, int]:
    target = infection if infection.any() else lung
    if not target.any():
        return tuple(n // 2 for n in lung.shape)  # type: ignore[return-value]
    coords = np.argwhere(target).mean(axis=0).round().astype(int)
    return int(coords[0]), int(coords[1]), int(coords[2])


def _panel(axes: Axes, image: np.ndarray, lung: np.ndarray, infection: np.ndarray,
           aspect: float, title: str) -> None:
    low, high = window_bounds(CT_WINDOW_WIDTH, CT_WINDOW_LEVEL)
    axes.imshow(image, cmap="gray", vmin=low, vmax=high, aspect=aspect,
                interpolation="nearest")
    for mask, colour in ((lung, "tab:green"), (infection, "tab:red")):
        if mask.any() and not mask.all():
            axes.contour(mask.astype(float), levels=[0.5], colors=colour, linewidths=1.0)
    axes.set_title(title)
    axes.set_axis_off()


def overlay_figure(
    hu: np.ndarray,
    lung: np.ndarray,
    infection: np.ndarray,
    spacing: Sequence[float],
    *,
    title: str,
) -> Figure:
    """Axial and coronal slices through the infection centroid (else the lung centre),
    lung contour green, infection red, window 1500/-600, aspect from the spacing."""
    if not hu.shape == lung.shape == infection.shape or hu.ndim != 3:
        raise InputError(f"expected hu, lung, infection of one 3-D shape, found {hu.shape}, "
                         f"{lung.shape}, {infection.shape}")
    sx, sy, sz = (float(s) for s in spacing)
    z, y, _ = _centre(lung, infection)
    figure = new_figure(9.0, 4.5)
    left, right = figure.subplots(1, 2)
    _panel(left, hu[z], lung[z], infection[z], sy / sx, f"axial z={z}")
    # Coronal: rows are z; flip so the head is at the top.
    _panel(right, hu[::-1, y, :], lung[::-1, y, :], infection[::-1, y, :], sz / sx,
           f"coronal y={y}")
    figure.suptitle(title)
    return figure
