"""The one way a figure is made: a `matplotlib.figure.Figure` with the Agg canvas
attached (no pyplot, no global backend) and constrained layout.

matplotlib is imported with the first figure, not with this module: a process that
only finds its stages cached (a rerun, `dsan status`) draws nothing and does not pay
for it (~0.4 s of CPU)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure
