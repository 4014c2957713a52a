"""Attention faithfulness: does a map look at the infection, and does the network use it?

For one scan, a non-negative map A, an infection mask M and the lung mask L, all
(z, y, x) on the same grid (the network input's). The map is scored inside the lung
only (the network input is 0 outside it, so mass there says nothing about lesions):

    mass_inside   sum(A * M * L) / sum(A * L): the share of the lung's attention mass
                  in the infection
    chance        sum(M * L) / sum(L): the infection's share of the lung, which is the
                  mass_inside of a uniform map over the lung (and the pointing hit rate
                  of a point drawn uniformly in the lung)
    lift          mass_inside / chance: 1 is chance level, above 1 the map prefers the
                  lesion
    pointing_hit  the pointing game: 1 when the map's maximum inside the lung lies in the
                  infection, 0 when it lies outside. Where the maximum is a plateau
                  (several voxels), the fraction of those voxels inside M, so the score
                  never depends on which maximal voxel an argmax happens to return.

All are NaN when undefined: an empty infection or lung (nothing to point at) or a map
without positive mass in the lung. Without L the whole grid stands for the lung. Pass
the attention map A (or Grad-CAM) before the sigmoid T(A), which saturates and would
turn maxima into plateaus.

The deletion test (`dsan_core.classifier.faithfulness.deletion_test`) adds, per map,
deletion_drop (P(COVID) minus P(COVID) with the map's top fraction of lung voxels
removed) and random_drop (the same number of lung voxels removed at random: the
control). `faithfulness_table` aggregates per model and analysis bin (att_us / att_ss
attention maps against rn34_us Grad-CAM), over the maps where each score is defined.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dsan_core.errors import InputError
from dsan_core.evaluation.tables import BIN_ALL, BINS
from dsan_core.prediction_table import attach, check_groups, ordered_models

SCORE_COLUMNS: tuple[str, ...] = ("scan_id", "model", "fold", "mass_inside", "pointing_hit",
                                  "chance", "lift", "deletion_drop", "random_drop")
FAITHFULNESS_COLUMNS: tuple[str, ...] = (
    "model", "bin", "n_maps", "mass_inside_mean", "mass_inside_std", "chance_mean",
    "lift_mean", "lift_std", "pointing_rate", "n_deletions", "deletion_drop_mean",
    "random_drop_mean")


@dataclass(frozen=True)
class FaithfulnessScore:
    mass_inside: float
    pointing_hit: float
    chance: float
    lift: float


_UNDEFINED = FaithfulnessScore(float("nan"), float("nan"), float("nan"), float("nan"))


def score_attention(attention: np.ndarray, mask: np.ndarray, lung: np.ndarray | None = None,
                    scan: str | None = None) -> FaithfulnessScore:
    """Mass inside, pointing hit, chance level and lift of one map inside the lung
    (module docstring); `scan` names it in errors."""
    a = np.asarray(attention, dtype=np.float64)
    region = np.ones(a.shape, dtype=bool) if lung is None else np.asarray(lung) != 0
    if a.ndim != 3 or a.shape != np.shape(mask) or a.shape != region.shape:
        raise InputError(f"expected attention, infection and lung of one (z, y, x) shape, "
                         f"found {a.shape}, {np.shape(mask)} and {region.shape}", scan=scan)
    if not np.isfinite(a).all() or (a < 0).any():
        raise InputError("expected a finite, non-negative attention map", scan=scan)
    inside = (np.asarray(mask) != 0) & region
    in_lung = a[region]
    total = float(in_lung.sum())
    if not inside.any() or total <= 0.0:
        return _UNDEFINED
    mass = float(a[inside].sum()) / total
    chance = float(np.count_nonzero(inside)) / float(np.count_nonzero(region))
    maximal = region & (a == in_lung.max())
    return FaithfulnessScore(
        mass_inside=mass,
        pointing_hit=float(np.count_nonzero(maximal & inside)) / float(np.count_nonzero(maximal)),
        chance=chance,
        lift=mass / chance,
    )


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def _std(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.std(ddof=1)) if finite.size > 1 else float("nan")


def faithfulness_table(scores: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """Per model and bin ('all' and each analysis bin): n_maps with a defined score
    (scans x fold models), mean and sample std (ddof = 1) of mass_inside, the mean chance
    level, the lift's mean and std, the pointing-game hit rate, and the deletion test
    (n_deletions maps with both drops defined; mean drop and mean random-control drop).

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
            values = {c: part[c].to_numpy(np.float64) for c in SCORE_COLUMNS[3:]}
            defined = np.isfinite(values["mass_inside"]) & np.isfinite(values["pointing_hit"])
            scored = {c: v[defined] for c, v in values.items()}
            deleted = np.isfinite(values["deletion_drop"]) & np.isfinite(values["random_drop"])
            records.append({
                "model": model, "bin": bin_name, "n_maps": int(defined.sum()),
                "mass_inside_mean": _mean(scored["mass_inside"]),
                "mass_inside_std": _std(scored["mass_inside"]),
                "chance_mean": _mean(scored["chance"]),
                "lift_mean": _mean(scored["lift"]), "lift_std": _std(scored["lift"]),
                "pointing_rate": _mean(scored["pointing_hit"]),
                "n_deletions": int(deleted.sum()),
                "deletion_drop_mean": _mean(values["deletion_drop"][deleted]),
                "random_drop_mean": _mean(values["random_drop"][deleted]),
            })
    return pd.DataFrame.from_records(records, columns=list(FAITHFULNESS_COLUMNS))
