"""Segmentation figures and evaluation: the ratio histogram (the paper's Fig. 1),
overlay PNGs, and Dice / ratio error on held-out scans with ground truth, for the
configured segmenter and the classical baseline side by side."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from dsan_core.config import SegmentationConfig
from dsan_core.plots.segmentation import overlay_figure, ratio_histogram_figure
from dsan_core.segmentation import load_vbnet
from dsan_core.segmentation.reporting import (
    MethodSummary,
    StandInSegmenter,
    evaluation_scans,
    score_held_out_scan,
    summarise,
    summary_markdown,
)
from storage.atomic import write_json, write_text
from storage.checkpoints import load_checkpoint
from storage.hashing import combine_hashes
from storage.schemas import SEG_EVAL
from storage.stage_cache import Manifest, artifact
from storage.tables import read_table, write_table
from storage.volumes import image_array, read_array, read_image, write_figure
from tasks._common.contract import StageInputs, StageRun, cached_stage
from tasks._common.progress import StageProgress
from tasks.segmentation import (
    TrainSegOutcome,
    ground_truth_cases,
    patients_of,
    vbnet_threshold,
)

FIGURES_STAGE = "segment-figures"
EVAL_STAGE = "segment-eval"
#: 2: the report names the VB-Net infection threshold. 3: medians kept in the manifest.
#: 4: the hold-out is chosen per patient (a patient's repeat scans were on both sides).
#: 5: every method is evaluated on the held-out patients (not all scans).
#: 6: the predict-time VB-Net of methods ground_truth / external is evaluated too, and the
#: predict-time segmenter's card is written.
VERSION = "6"


@dataclass(frozen=True)
class FiguresOutcome:
    stage: Manifest
    overlays: int


@dataclass(frozen=True)
class SegEvalOutcome:
    stage: Manifest
    scans: int
    summary: dict[str, MethodSummary]  # by method
    #: What `dsan predict` segments studies without masks with (`predict_segmenter_card`).
    predict_segmenter: dict[str, Any] = field(default_factory=dict)


def _masks(run: StageRun, lung_path: str, infection_path: str) -> tuple[np.ndarray, np.ndarray]:
    """A scan's (lung, infection) masks from their data-root paths."""
    return (read_array(run.layout.resolve(lung_path)),
            read_array(run.layout.resolve(infection_path)))


@task(name="segmentation_figures_task", cache_policy=NO_CACHE, persist_result=False)
def segmentation_figures_task(data_root: Path, config: SegmentationConfig,
                              run_id: str | None = None) -> FiguresOutcome:
    with StageRun.open(data_root, run_id) as run:
        inputs = {n: run.memo.hash_file(run.layout.table(n)) for n in ("infection", "scans")}

        def compute(key: str) -> Manifest:
            infection = read_table(run.layout, "infection")
            scans = read_table(run.layout, "scans")[["scan_id", "label", "volume_path"]]
            table = scans.merge(infection, on="scan_id").sort_values("scan_id", ignore_index=True)
            hist = run.layout.figure("segmentation", "infection_ratio_histogram.png")
            write_figure(ratio_histogram_figure(table), hist)
            outputs = {"histogram": artifact(run.layout, hist, run.memo)}
            chosen = table if config.max_overlays is None else table.head(config.max_overlays)
            for row in chosen.itertuples(index=False):
                image = read_image(run.layout.resolve(row.volume_path))
                lung, infection_mask = _masks(run, row.lung_path, row.infection_path)
                title = f"{row.scan_id} ({row.label}, ratio {row.infection_ratio:.4f})"
                figure = overlay_figure(image_array(image), lung, infection_mask,
                                        image.GetSpacing(), title=title)
                path = run.layout.figure("segmentation", f"overlays/{row.scan_id}.png")
                write_figure(figure, path)
                outputs[f"overlay:{row.scan_id}"] = artifact(run.layout, path, run.memo)
            return Manifest(FIGURES_STAGE, key, outputs, {"overlays": len(chosen)})

        stage = cached_stage(run, StageInputs(FIGURES_STAGE, VERSION, str(config.max_overlays),
                                              inputs), compute=compute, logger=get_run_logger())
    return FiguresOutcome(stage, int(stage.data["overlays"]))


def _evaluate(run: StageRun, key: str, held: pd.DataFrame, predicted: pd.DataFrame,
              config: SegmentationConfig, thresholds: list[float],
              model: TrainSegOutcome | None, standin: StandInSegmenter | None,
              logger: Any) -> Manifest:
    """Score every held-out scan; write `seg_eval`, the Markdown summary and the card of
    the segmenter `dsan predict` uses for studies without masks."""
    rows = []
    with StageProgress("evaluating segmenters on the held-out scans", len(held),
                       unit="scans") as progress:
        for case in held.itertuples(index=False):
            image = read_image(run.layout.resolve(case.volume_path))
            made = predicted.loc[case.scan_id]
            found, problem = score_held_out_scan(
                case.scan_id, image_array(image, np.float32), image.GetSpacing(),
                _masks(run, case.lung_path, case.infection_path),
                _masks(run, made["lung_path"], made["infection_path"]), config, standin)
            rows += found
            if problem:
                logger.warning("classical baseline failed: %s", problem)
            progress.advance()
    table = pd.DataFrame(rows, columns=SEG_EVAL.names)
    write_table(run.layout, "seg_eval", table)
    summary = summarise(table)
    report = run.layout.report("segmentation", "evaluation.md")
    write_text(report, summary_markdown(summary, thresholds))
    card_path = run.layout.predict_segmenter()
    card = predict_segmenter_card(config, model, summary)
    write_json(card_path, card)
    return Manifest(EVAL_STAGE, key, {
        "seg_eval": artifact(run.layout, run.layout.table("seg_eval"), run.memo),
        "report": artifact(run.layout, report, run.memo),
        "predict_segmenter": artifact(run.layout, card_path, run.memo)}, {
        "scans": int(table["scan_id"].nunique()),
        "summary": {method: asdict(s) for method, s in summary.items()},
        "predict_segmenter": card})


def predict_segmenter_card(config: SegmentationConfig, model: TrainSegOutcome | None,
                           summary: dict[str, MethodSummary]) -> dict[str, Any]:
    """What `dsan predict` segments a study without masks with, and how good it was on
    the held-out scans: the configured segmenter for methods vbnet and classical; for
    methods ground_truth and external (masks made elsewhere) the VB-Net trained on the
    scans with ground truth, else the classical segmenter, marked `weaker`."""
    if model is not None and config.method != "classical":
        method, version = "vbnet", model.model_version
        threshold: float | None = vbnet_threshold(config, model)
    else:
        method, version, threshold = "classical", config.classical.fingerprint(), None
    held = summary.get(method)
    return {"method": method, "version": version, "tag": f"{method}__{version}",
            "infection_threshold": threshold,
            "weaker": config.method in ("ground_truth", "external"),
            "trained_on": None if model is None or method != "vbnet" else {
                "train": model.n_train, "val": model.n_val},
            "held_out": None if held is None else asdict(held)}


@task(name="evaluate_segmentation_task", cache_policy=NO_CACHE, persist_result=False)
def evaluate_segmentation_task(data_root: Path, config: SegmentationConfig,
                               model: TrainSegOutcome | None = None, device: str = "cpu",
                               run_id: str | None = None) -> SegEvalOutcome:
    """Per-scan Dice and ratio error of the configured method, the classical baseline and
    (methods ground_truth, external) the VB-Net `model` that stands in for their masks at
    predict time."""
    logger = get_run_logger()
    standin_model = (model if model is not None and config.method in ("ground_truth",
                                                                      "external") else None)
    with StageRun.open(data_root, run_id) as run:
        cases = ground_truth_cases(run).set_index("scan_id", drop=False)
        infection = read_table(run.layout, "infection").set_index("scan_id")
        chosen = [s for s in evaluation_scans(cases.index.tolist(), config, patients_of(cases))
                  if s in infection.index]
        held, predicted = cases.loc[chosen], infection.loc[chosen]
        thresholds = sorted(set(predicted["infection_threshold"].dropna().astype(float)))
        inputs = {"infection_threshold": str(thresholds), "cases": combine_hashes(
            [*held["volume_hash"], *held["lung_hash"], *held["infection_hash"]]),
            "predictions": combine_hashes([*predicted["lung_hash"],
                                           *predicted["infection_hash"]])}
        if model is not None and config.method != "classical":  # the card names it
            inputs["vbnet"] = model.model_version
        if standin_model is not None:
            inputs["vbnet_threshold"] = f"{vbnet_threshold(config, standin_model):.6g}"

        def compute(key: str) -> Manifest:
            standin = None
            if standin_model is not None:
                weights = load_checkpoint(standin_model.stage.output_path(run.layout, "model"))
                standin = StandInSegmenter(
                    load_vbnet(weights, config.vbnet, torch.device(device)),
                    vbnet_threshold(config, standin_model), torch.device(device))
            return _evaluate(run, key, held, predicted, config, thresholds, model, standin,
                             logger)

        stage = cached_stage(run, StageInputs(EVAL_STAGE, VERSION,
                                              config.classical.fingerprint() + config.method,
                                              inputs), compute=compute, logger=logger)
        create_markdown_artifact(markdown=stage.output_path(run.layout, "report").read_text(),
                                 key="segmentation-evaluation")
    summary = {method: MethodSummary(**values) for method, values in stage.data["summary"].items()}
    return SegEvalOutcome(stage, int(stage.data["scans"]), summary,
                          dict(stage.data.get("predict_segmenter") or {}))

