"""Segmentation figures and evaluation: the ratio histogram (the paper's Fig. 1),
overlay PNGs, and Dice / ratio error on held-out scans with ground truth, for the
configured segmenter and the classical baseline side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from dsan_core.config import SegmentationConfig
from dsan_core.errors import DsanError
from dsan_core.plots.segmentation import overlay_figure, ratio_histogram_figure
from dsan_core.segmentation import evaluate_segmentation, segment_classical
from dsan_core.segmentation.partition import HOLDOUT
from storage.atomic import write_text
from storage.hashing import combine_hashes
from storage.schemas import SEG_EVAL
from storage.stage_cache import Manifest, artifact
from storage.tables import read_table, write_table
from storage.volumes import read_image, write_figure
from tasks.contract import StageRun, cached_stage
from tasks.segmentation import ground_truth_cases, seg_partition

FIGURES_STAGE = "segment-figures"
EVAL_STAGE = "segment-eval"
VERSION = "2"  # 2: the report names the VB-Net infection threshold


def _arrays(run: StageRun, *paths: str) -> list[np.ndarray]:
    return [sitk.GetArrayFromImage(read_image(run.layout.resolve(p))) for p in paths]


@task(name="segmentation_figures_task", cache_policy=NO_CACHE, persist_result=False)
def segmentation_figures_task(data_root: Path, config: SegmentationConfig,
                              run_id: str | None = None) -> dict[str, Any]:
    with StageRun.open(data_root, run_id) as run:
        inputs = {n: run.memo.hash_file(run.layout.table(n)) for n in ("infection", "scans")}

        def compute(key: str) -> Manifest:
            infection = read_table(run.layout, "infection")
            scans = read_table(run.layout, "scans")[["scan_id", "label", "volume_path"]]
            table = scans.merge(infection, on="scan_id").sort_values("scan_id", ignore_index=True)
            outputs = {}
            hist = run.layout.figure("segmentation", "infection_ratio_histogram.png")
            write_figure(ratio_histogram_figure(table), hist)
            outputs["histogram"] = artifact(run.layout, hist, run.memo)
            chosen = table if config.max_overlays is None else table.head(config.max_overlays)
            for row in chosen.itertuples(index=False):
                image = read_image(run.layout.resolve(row.volume_path))
                lung, infection_mask = _arrays(run, row.lung_path, row.infection_path)
                title = f"{row.scan_id} ({row.label}, ratio {row.infection_ratio:.4f})"
                figure = overlay_figure(sitk.GetArrayFromImage(image), lung, infection_mask,
                                        image.GetSpacing(), title=title)
                path = run.layout.figure("segmentation", f"overlays/{row.scan_id}.png")
                write_figure(figure, path)
                outputs[f"overlay:{row.scan_id}"] = artifact(run.layout, path, run.memo)
            return Manifest(FIGURES_STAGE, key, outputs, {"overlays": len(chosen)})

        manifest = cached_stage(run, stage=FIGURES_STAGE, version=VERSION,
                                config_hash=str(config.max_overlays), inputs=inputs,
                                compute=compute, logger=get_run_logger())
        return manifest.to_dict()


def _summary_markdown(table: pd.DataFrame, thresholds: list[float]) -> str:
    lines = ["# Segmentation evaluation on held-out scans with ground truth", "",
             "| method | scans | lung Dice (median) | lung Dice (min) | infection Dice (median) "
             "| infection Dice (min) | ratio error (median, relative) |",
             "|---|---|---|---|---|---|---|"]
    for method, group in table.groupby("method", sort=True):
        finite = group["ratio_rel_error"].replace([np.inf], np.nan)
        lines.append(
            f"| {method} | {len(group)} | {group['lung_dice'].median():.4f} | "
            f"{group['lung_dice'].min():.4f} | {group['infection_dice'].median():.4f} | "
            f"{group['infection_dice'].min():.4f} | {100 * finite.median():.1f} % |"
        )
    lines += ["", "Dice is per scan; the ratio error is |ratio_pred - ratio_true| / ratio_true.",
              "Scans whose true ratio is 0 have an undefined relative error and are left out of "
              "its median."]
    if thresholds:
        lines.append("VB-Net infection threshold (probability): "
                     + ", ".join(f"{t:.2f}" for t in thresholds) + ".")
    return "\n".join(lines + [""])


@task(name="evaluate_segmentation_task", cache_policy=NO_CACHE, persist_result=False)
def evaluate_segmentation_task(data_root: Path, config: SegmentationConfig,
                               run_id: str | None = None) -> dict[str, Any]:
    """Per-scan Dice and ratio error of the configured method and the classical baseline."""
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:
        cases = ground_truth_cases(run)
        partition = seg_partition(cases, config)
        holdout = cases[cases["scan_id"].map(partition) == HOLDOUT]
        if config.method != "vbnet" or holdout.empty:
            holdout = cases  # nothing was trained on them, or nothing was held out
        infection = read_table(run.layout, "infection").set_index("scan_id")
        holdout = holdout[holdout["scan_id"].isin(infection.index)]
        used = infection.loc[holdout["scan_id"], "infection_threshold"].dropna()
        thresholds = sorted(set(used.astype(float)))
        inputs = {
            "infection_threshold": str(thresholds),
            "cases": combine_hashes(holdout["volume_hash"].tolist() + holdout["lung_hash"].tolist()
                                    + holdout["infection_hash"].tolist()),
            "predictions": combine_hashes(infection.loc[holdout["scan_id"], "lung_hash"].tolist()
                                          + infection.loc[holdout["scan_id"],
                                                          "infection_hash"].tolist()),
        }

        def compute(key: str) -> Manifest:
            rows = []
            for case in holdout.itertuples(index=False):
                image = read_image(run.layout.resolve(case.volume_path))
                hu = sitk.GetArrayFromImage(image).astype(np.float32)
                spacing = image.GetSpacing()
                gt_lung, gt_inf = _arrays(run, case.lung_path, case.infection_path)
                predicted = infection.loc[case.scan_id]
                candidates = {config.method: tuple(_arrays(run, predicted["lung_path"],
                                                           predicted["infection_path"]))}
                if config.method != "classical":
                    try:
                        candidates["classical"] = segment_classical(
                            hu, spacing, config.classical, scan_id=case.scan_id)
                    except DsanError as error:
                        logger.warning("classical baseline failed: %s", error)
                for method, (lung, inf) in candidates.items():
                    scores = evaluate_segmentation(lung, inf, gt_lung, gt_inf, spacing,
                                                   scan_id=case.scan_id)
                    rows.append({"scan_id": case.scan_id, "method": method,
                                 "lung_dice": scores["lung_dice"],
                                 "infection_dice": scores["infection_dice"],
                                 "ratio_pred": scores["ratio_pred"],
                                 "ratio_true": scores["ratio_gt"],
                                 "ratio_abs_error": scores["ratio_abs_error"],
                                 "ratio_rel_error": scores["ratio_rel_error"]})
            table = pd.DataFrame(rows, columns=SEG_EVAL.names)
            write_table(run.layout, "seg_eval", table)
            markdown = _summary_markdown(table, thresholds)
            report = run.layout.report("segmentation", "evaluation.md")
            write_text(report, markdown)
            try:
                create_markdown_artifact(markdown=markdown, key="segmentation-evaluation")
            except Exception:  # noqa: BLE001 - artifacts are best effort outside a server
                logger.debug("no artifact API available")
            medians = table.groupby("method")[["lung_dice", "infection_dice"]].median()
            rel = table.assign(r=table["ratio_rel_error"].replace([np.inf], np.nan))
            rel_median = rel.groupby("method")["r"].median()
            return Manifest(EVAL_STAGE, key, {
                "seg_eval": artifact(run.layout, run.layout.table("seg_eval"), run.memo),
                "report": artifact(run.layout, report, run.memo)},
                {"scans": int(table["scan_id"].nunique()),
                 "medians": {m: {"lung_dice": float(r.lung_dice),
                                 "infection_dice": float(r.infection_dice),
                                 "ratio_rel_error": float(rel_median[m])}
                             for m, r in medians.iterrows()}})

        manifest = cached_stage(run, stage=EVAL_STAGE, version=VERSION,
                                config_hash=config.classical.fingerprint() + config.method,
                                inputs=inputs, compute=compute, logger=logger)
        return manifest.to_dict()
