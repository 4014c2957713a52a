"""Human-in-the-loop mask review: which scans to show reviewers, and what they changed.

Active learning as MONAI Label does it: score every scan without reviewed masks by how
unsure the segmenter is, show the least sure first. The score is the mean predictive
entropy of the VB-Net's class probabilities (background, lung, infection) over the
voxels it calls lung, normalised by log(3) to [0, 1]: 0 where it is certain, 1 where
the three classes are equally likely. Random selection is the baseline.

Arrays are (z, y, x); probabilities (3, z, y, x); masks uint8 0/1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from dsan_core.errors import InputError
from dsan_core.segmentation.metrics import dice
from dsan_core.segmentation.slicer import label_map

Strategy = Literal["uncertainty", "random"]
STRATEGIES: tuple[str, ...] = ("uncertainty", "random")


def predictive_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Per-voxel entropy of (classes, z, y, x) probabilities over the classes, divided by
    log(classes): (z, y, x) in [0, 1]."""
    p = probs.float().clamp_min(1e-12)
    return -(p * p.log()).sum(dim=0) / math.log(probs.shape[0])


def review_score(probs: torch.Tensor, lung: np.ndarray | torch.Tensor) -> float:
    """Mean normalised predictive entropy inside `lung` (the segmenter's own lung); 1.0
    (as unsure as can be) when it found no lung."""
    inside = torch.as_tensor(np.asarray(lung) if not isinstance(lung, torch.Tensor) else lung)
    inside = inside.to(probs.device).bool()
    if inside.shape != probs.shape[1:]:
        raise InputError(f"expected a lung mask of shape {tuple(probs.shape[1:])}, found "
                         f"{tuple(inside.shape)}")
    if not bool(inside.any()):
        return 1.0
    return float(predictive_entropy(probs)[inside].mean())


def pick_for_review(scores: Mapping[str, float], n: int, strategy: Strategy, *,
                    seed: int = 0) -> list[str]:
    """The `n` scan ids to review, in the order to review them.

    uncertainty: highest score first (ties by id); random: a seeded draw from the ids
    (scores unused), so the baseline repeats exactly.
    """
    if n < 1:
        raise InputError(f"expected at least 1 scan to pick, found n={n}")
    ids = sorted(scores)
    if strategy == "uncertainty":
        return sorted(ids, key=lambda s: (-float(scores[s]), s))[:n]
    if strategy == "random":
        rng = np.random.default_rng(seed)
        chosen = rng.permutation(len(ids))[:n]
        return [ids[i] for i in chosen]
    raise InputError(f"expected strategy among {list(STRATEGIES)}, found {strategy!r}")


@dataclass(frozen=True)
class ReviewChange:
    """How a reviewer's masks differ from the proposal they were shown."""

    lung_dice: float
    infection_dice: float
    voxels_changed: int  # voxels whose label (background / lung / infection) changed


def compare_review(proposal: tuple[np.ndarray, np.ndarray],
                   corrected: tuple[np.ndarray, np.ndarray]) -> ReviewChange:
    """Dice per structure and changed voxels between (lung, infection) pairs."""
    before, after = label_map(*proposal), label_map(*corrected)
    if before.shape != after.shape:
        raise InputError(f"expected proposal and correction of one shape, found "
                         f"{before.shape} and {after.shape}")
    return ReviewChange(dice(before >= 1, after >= 1), dice(before == 2, after == 2),
                        int((before != after).sum()))


def review_counts(scan_ids: list[str], ingested: set[str], reviewed: set[str],
                  proposed: set[str]) -> dict[str, int]:
    """Scans by review state; each scan counts once, in the first state that applies:
    reviewed, ground truth from ingestion, proposed (awaiting review), never seen."""
    counts = {"scans": len(scan_ids), "reviewed": 0, "ground_truth": 0, "proposed": 0,
              "never_seen": 0}
    for scan_id in scan_ids:
        state = ("reviewed" if scan_id in reviewed else "ground_truth" if scan_id in ingested
                 else "proposed" if scan_id in proposed else "never_seen")
        counts[state] += 1
    return counts
