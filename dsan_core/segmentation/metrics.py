"""Overlap metrics and the segmentation evaluation summary. Masks are (z, y, x)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dsan_core.errors import InputError
from dsan_core.segmentation.ratio import infection_ratio


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two binary masks of equal shape; 1.0 when both are empty."""
    if a.shape != b.shape:
        raise InputError(f"dice: expected equal shapes, found {a.shape} and {b.shape}")
    a_b, b_b = a.astype(bool), b.astype(bool)
    total = int(a_b.sum()) + int(b_b.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(a_b, b_b).sum()) / total


def evaluate_segmentation(
    pred_lung: np.ndarray,
    pred_inf: np.ndarray,
    gt_lung: np.ndarray,
    gt_inf: np.ndarray,
    spacing: Sequence[float],
    *,
    scan_id: str | None = None,
) -> dict[str, float]:
    """Dice and infection-ratio agreement of a prediction against ground truth.

    Keys: lung_dice, infection_dice, ratio_pred, ratio_gt, ratio_abs_error and
    ratio_rel_error (abs error / gt ratio; 0 when both ratios are 0, inf when only
    the ground truth is 0).
    """
    pred = infection_ratio(pred_lung, pred_inf, spacing, scan_id=scan_id)
    gt = infection_ratio(gt_lung, gt_inf, spacing, scan_id=scan_id)
    abs_error = abs(pred.infection_ratio - gt.infection_ratio)
    if gt.infection_ratio > 0:
        rel_error = abs_error / gt.infection_ratio
    else:
        rel_error = 0.0 if abs_error == 0 else float("inf")
    return {
        "lung_dice": dice(pred_lung, gt_lung),
        "infection_dice": dice(pred_inf, gt_inf),
        "ratio_pred": pred.infection_ratio,
        "ratio_gt": gt.infection_ratio,
        "ratio_abs_error": abs_error,
        "ratio_rel_error": rel_error,
    }
