"""Attention faithfulness: does a map look at the infection?

For one scan, a non-negative map A and an infection mask M, both (z, y, x) on the same
grid (the network input's):

    mass_inside   sum(A * M) / sum(A): the fraction of attention mass in the infection
    pointing_hit  the pointing game: 1 when the map's maximum lies in the infection,
                  0 when it lies outside. Where the maximum is a plateau (several
                  voxels), the fraction of those voxels inside M, so the score never
                  depends on which maximal voxel an argmax happens to return.

Both are NaN when undefined: an empty mask (nothing to point at) or a map without
positive mass. Pass the attention map A (or Grad-CAM) before the sigmoid T(A), which
saturates and would turn maxima into plateaus.

`faithfulness_table` aggregates per model and analysis bin (att_us / att_ss attention
maps against rn34_us Grad-CAM), over the scans where the score is defined.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dsan_core.errors import InputError
from dsan_core.evaluation.predictions import attach, check_groups, ordered_models
from dsan_core.evaluation.tables import BIN_ALL, BINS

SCORE_COLUMNS: tuple[str, ...] = ("scan_id", "model", "fold", "mass_inside", "pointing_hit")
FAITHFULNESS_COLUMNS: tuple[str, ...] = ("model", "bin", "n_maps", "mass_inside_mean",
                                         "mass_inside_std", "pointing_rate")


@dataclass(frozen=True)
class FaithfulnessScore:
    mass_inside: float
    pointing_hit: float


def score_attention(attention: np.ndarray, mask: np.ndarray,
                    scan: str | None = None) -> FaithfulnessScore:
    """Mass inside and pointing hit of one map (module docstring); `scan` names it in
    errors."""
    a = np.asarray(attention, dtype=np.float64)
    inside = np.asarray(mask) != 0
    if a.ndim != 3 or a.shape != inside.shape:
        raise InputError(f"expected attention and mask of one (z, y, x) shape, found "
                         f"{a.shape} and {inside.shape}", scan=scan)
    if not np.isfinite(a).all() or (a < 0).any():
        raise InputError("expected a finite, non-negative attention map", scan=scan)
    total = float(a.sum())
    if not inside.any() or total <= 0.0:
        return FaithfulnessScore(float("nan"), float("nan"))
    maximal = a == a.max()
    return FaithfulnessScore(
        mass_inside=float(a[inside].sum()) / total,
        pointing_hit=float(np.count_nonzero(maximal & inside)) / float(np.count_nonzero(maximal)),
    )


def faithfulness_table(scores: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """Per model and bin ('all' and each analysis bin): n_maps with a defined score
    (scans x fold models), mean and sample std (ddof = 1) of mass_inside, and the
    pointing-game hit rate.

    `scores` has `SCORE_COLUMNS`, one row per scan and map (a scan may appear once per
    fold model); `groups` gives each scan's analysis bin.
    """
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise InputError(f"expected score columns {list(SCORE_COLUMNS)}, missing {missing}")
    rows = attach(scores.loc[:, list(SCORE_COLUMNS)].astype({"scan_id": str, "model": str}),
                  check_groups(groups)[["scan_id", "analysis_bin"]], "groups")
    records: list[dict[str, object]] = []
    for model in ordered_models(rows["model"]):
        for bin_name in BINS:
            part = rows.loc[rows["model"] == model]
            if bin_name != BIN_ALL:
                part = part.loc[part["analysis_bin"] == bin_name]
            mass = part["mass_inside"].to_numpy(np.float64)
            hit = part["pointing_hit"].to_numpy(np.float64)
            defined = np.isfinite(mass) & np.isfinite(hit)
            mass, hit = mass[defined], hit[defined]
            records.append({
                "model": model, "bin": bin_name, "n_maps": int(defined.sum()),
                "mass_inside_mean": float(mass.mean()) if mass.size else float("nan"),
                "mass_inside_std": float(mass.std(ddof=1)) if mass.size > 1 else float("nan"),
                "pointing_rate": float(hit.mean()) if hit.size else float("nan"),
            })
    return pd.DataFrame.from_records(records, columns=list(FAITHFULNESS_COLUMNS))
