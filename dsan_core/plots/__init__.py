"""Figures as `matplotlib.figure.Figure` objects (no pyplot, no global backend).

The Agg canvas is attached on creation (`canvas.new_figure`, where matplotlib is
imported, with the first figure); the tasks save them with
`storage.volumes.write_figure` (or `figure_png` for the bytes), at one draw each: the
figures use constrained layout, so no `bbox_inches="tight"` re-draw is needed.
"""

from __future__ import annotations

from dsan_core.plots.segmentation import overlay_figure, ratio_histogram_figure

__all__ = ["overlay_figure", "ratio_histogram_figure"]
