"""Segmentation quality on held-out scans with ground truth: which scans, their Dice
and ratio error for the configured segmenter and the classical baseline, medians,
and the Markdown summary. Arrays (z, y, x); spacing (x, y, z) mm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from dsan_core.config import SegmentationConfig
from dsan_core.errors import DsanError
from dsan_core.segmentation.classical import segment_classical
from dsan_core.segmentation.inference import masks_at, volume_probs
from dsan_core.segmentation.metrics import evaluate_segmentation
from dsan_core.segmentation.partition import HOLDOUT, partition_cases

EVAL_COLUMNS = ("scan_id", "method", "lung_dice", "infection_dice", "ratio_pred", "ratio_true",
                "ratio_abs_error", "ratio_rel_error")


def segmentation_partition(scan_ids: Sequence[str], config: SegmentationConfig,
                           patients: Mapping[str, str]) -> dict[str, str]:
    """train / val / holdout of every scan with ground truth, per patient (`patients`:
    scan id -> pseudonymous patient id); stable as scans are added."""
    return partition_cases(scan_ids, val_fraction=config.vbnet.val_fraction,
                           holdout_fraction=config.holdout_fraction, seed=config.vbnet.seed,
                           max_val=config.vbnet.max_val_cases, patients=patients)


def evaluation_scans(scan_ids: Sequence[str], config: SegmentationConfig,
                     patients: Mapping[str, str]) -> list[str]:
    """The scans to evaluate on: the held-out patients' scans (the VB-Net never trained on
    them; for the other methods the same sample keeps the evaluation's cost at a fifth of
    the cohort); every scan with ground truth when nothing was held out."""
    ids = sorted(scan_ids)
    partition = segmentation_partition(ids, config, patients)
    held = [scan_id for scan_id in ids if partition[scan_id] == HOLDOUT]
    return held or ids


@dataclass(frozen=True)
class StandInSegmenter:
    """The VB-Net that stands in at predict time for masks made elsewhere (methods
    ground_truth, external), loaded, with its infection threshold."""

    network: torch.nn.Module
    threshold: float
    device: torch.device


def score_held_out_scan(
    scan_id: str,
    hu: np.ndarray,
    spacing: Sequence[float],
    truth: tuple[np.ndarray, np.ndarray],
    masks: tuple[np.ndarray, np.ndarray],
    config: SegmentationConfig,
    standin: StandInSegmenter | None = None,
) -> tuple[list[dict[str, object]], str | None]:
    """`compare_with_truth` of one held-out scan: the configured method's `masks` and,
    with a `standin`, that VB-Net's masks of the same scan."""
    candidates: dict[str, tuple[np.ndarray, np.ndarray]] = {config.method: masks}
    if standin is not None:
        probs = volume_probs(standin.network, hu, spacing, config.vbnet, standin.device)
        candidates["vbnet"] = masks_at(probs, standin.threshold)
    return compare_with_truth(scan_id, hu, spacing, truth, candidates, config)


def compare_with_truth(
    scan_id: str,
    hu: np.ndarray,
    spacing: Sequence[float],
    truth: tuple[np.ndarray, np.ndarray],
    predicted: Mapping[str, tuple[np.ndarray, np.ndarray]],
    config: SegmentationConfig,
) -> tuple[list[dict[str, object]], str | None]:
    """One row per method (`predicted` by method name, plus the classical baseline when it
    is not the configured method): Dice and ratio error against `truth` (lung,
    infection). Also returns why the baseline could not run (None when it ran)."""
    candidates = dict(predicted)
    problem = None
    if config.method != "classical":
        try:
            candidates["classical"] = segment_classical(hu, spacing, config.classical,
                                                        scan_id=scan_id)
        except DsanError as error:  # the baseline failing is reported, not fatal
            problem = str(error)
    rows: list[dict[str, object]] = []
    for method, (lung, infection) in candidates.items():
        scores = evaluate_segmentation(lung, infection, truth[0], truth[1], spacing,
                                       scan_id=scan_id)
        rows.append({"scan_id": scan_id, "method": method, "lung_dice": scores["lung_dice"],
                     "infection_dice": scores["infection_dice"],
                     "ratio_pred": scores["ratio_pred"], "ratio_true": scores["ratio_gt"],
                     "ratio_abs_error": scores["ratio_abs_error"],
                     "ratio_rel_error": scores["ratio_rel_error"]})
    return rows, problem


@dataclass(frozen=True)
class MethodSummary:
    scans: int
    lung_dice: float  # medians
    lung_dice_min: float
    infection_dice: float
    infection_dice_min: float
    ratio_rel_error: float  # median over scans whose true ratio is not 0


def summarise(table: pd.DataFrame) -> dict[str, MethodSummary]:
    """Per method, in name order: medians (and minima) over the evaluated scans."""
    out = {}
    for method, group in table.groupby("method", sort=True):
        finite = group["ratio_rel_error"].replace([np.inf], np.nan)
        out[str(method)] = MethodSummary(
            int(group["scan_id"].nunique()), float(group["lung_dice"].median()),
            float(group["lung_dice"].min()), float(group["infection_dice"].median()),
            float(group["infection_dice"].min()), float(finite.median()))
    return out


def summary_markdown(summary: Mapping[str, MethodSummary], thresholds: Sequence[float]) -> str:
    lines = ["# Segmentation evaluation on held-out scans with ground truth", "",
             "| method | scans | lung Dice (median) | lung Dice (min) | infection Dice (median) "
             "| infection Dice (min) | ratio error (median, relative) |",
             "|---|---|---|---|---|---|---|"]
    for method, s in summary.items():
        lines.append(f"| {method} | {s.scans} | {s.lung_dice:.4f} | {s.lung_dice_min:.4f} | "
                     f"{s.infection_dice:.4f} | {s.infection_dice_min:.4f} | "
                     f"{100 * s.ratio_rel_error:.1f} % |")
    lines += ["", "Dice is per scan; the ratio error is |ratio_pred - ratio_true| / ratio_true.",
              "Scans whose true ratio is 0 have an undefined relative error and are left out of "
              "its median."]
    if thresholds:
        lines.append("VB-Net infection threshold (probability): "
                     + ", ".join(f"{t:.2f}" for t in thresholds) + ".")
    return "\n".join(lines + [""])
