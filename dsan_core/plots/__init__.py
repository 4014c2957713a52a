"""Figures as `matplotlib.figure.Figure` objects (no pyplot, no global backend).

Save them with `figure.savefig(path)`; the Agg canvas is attached on creation.
"""

from __future__ import annotations

from dsan_core.plots.segmentation import overlay_figure, ratio_histogram_figure

__all__ = ["overlay_figure", "ratio_histogram_figure"]
