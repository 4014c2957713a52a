"""The picture `dsan predict` writes per study: the attention map over the CT."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from dsan_core.config import CT_WINDOW_LEVEL, CT_WINDOW_WIDTH
from dsan_core.errors import InputError
from dsan_core.plots.canvas import new_figure
from dsan_core.preprocessing.intensity import window_bounds

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def attention_overlay_figure(hu: np.ndarray, attention: np.ndarray, spacing: Sequence[float],
                             *, title: str,
                             window: tuple[float, float] = (CT_WINDOW_WIDTH, CT_WINDOW_LEVEL)
                             ) -> Figure:
    """Axial and coronal slices (z, y, x arrays, spacing (x, y, z) mm) through the map's
    maximum: the CT at window (width, level), the attention map in colour over it."""
    if hu.shape != attention.shape or hu.ndim != 3:
        raise InputError(f"expected a CT and a map of one 3-D shape, found {hu.shape} and "
                         f"{attention.shape}")
    low, high = window_bounds(*window)
    z, y, _ = (int(v) for v in np.unravel_index(int(np.argmax(attention)), attention.shape))
    sx, sy, sz = (float(v) for v in spacing)
    figure = new_figure(9.0, 4.6)
    for axes, ct, heat, aspect, name in zip(
            figure.subplots(1, 2), (hu[z], hu[::-1, y, :]),
            (attention[z], attention[::-1, y, :]), (sy / sx, sz / sx), ("axial", "coronal"),
            strict=True):
        axes.imshow(ct, cmap="gray", vmin=low, vmax=high, aspect=aspect,
                    interpolation="nearest")
        axes.imshow(np.ma.masked_less(heat, 0.05), cmap="jet", alpha=0.45, vmin=0.0,
                    vmax=1.0, aspect=aspect, interpolation="bilinear")
        axes.set_title(name, fontsize=9)
        axes.set_axis_off()
    figure.suptitle(title, fontsize=10)
    return figure
