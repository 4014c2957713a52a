"""`dsan predict`: new studies through the trained ensemble, no labels needed.

The same series choice, checks and pseudonyms as ingestion (a study that fails a check
is refused with the reason); lung and infection masks from the data root's segmenter
(the trained VB-Net or the classical one; for a model trained on imported masks, the
request's masks when given, else the VB-Net trained on the scans with ground truth, or
the classical segmenter when there were none, marked weaker in the row); then
`dsan_core.prediction.predict_study`. Per study
under the output folder `<scan_id>/`: `ct.nii.gz`, `attention.nii.gz` (the map on the
CT's grid: load both in 3D Slicer) and `overlay.png`; one row per study in the
`predictions_new` table (the latest prediction of each scan).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dsan_core.branches import ATT_SS, ATT_US
from dsan_core.classifier import DSANet, load_classifier
from dsan_core.config import (
    KEY_ENV,
    GroupsConfig,
    IngestConfig,
    PreprocessConfig,
    SegmentationConfig,
    TrainConfig,
)
from dsan_core.dicom import (
    choose_series,
    decode_series,
    index_headers,
    list_export,
    pseudonymise,
    resolve_pseudonym_key,
)
from dsan_core.ensemble import EnsembleWeights
from dsan_core.errors import DsanError, SchemaError, StageError
from dsan_core.plots.prediction import attention_overlay_figure
from dsan_core.prediction import StudyPrediction, TrainedEnsemble, predict_study
from dsan_core.segmentation import load_vbnet, segment_scan
from dsan_core.segmentation.external import conform_mask
from storage.checkpoints import load_checkpoint
from storage.inputs import PredictRequest
from storage.registry import require_promoted
from storage.schemas import PREDICTIONS_NEW
from storage.tables import read_table, table_exists, write_table
from storage.volumes import image_array, read_image, write_array, write_figure, write_image
from tasks._common.contract import StageRun
from tasks._common.progress import StageProgress


@dataclass(frozen=True)
class StudyResult:
    """One study's outcome, by pseudonym only."""

    scan_id: str
    study_id: str
    status: str  # predicted | refused
    reason: str
    prediction: StudyPrediction | None = None
    segmenter: str = ""  # where the masks came from (vbnet__..., classical__..., masks)
    weaker_segmenter: bool | None = None

    def record(self, model_id: str) -> dict[str, Any]:
        p = self.prediction
        return {"scan_id": self.scan_id, "study_id": self.study_id, "status": self.status,
                "reason": self.reason, "model_id": model_id,
                "segmenter": self.segmenter or None,
                "weaker_segmenter": self.weaker_segmenter,
                "probability": None if p is None else round(p.probability, 6),
                "decision": None if p is None else p.decision,
                "infection_ratio": None if p is None else round(p.infection_ratio, 6),
                "ensemble_band": None if p is None else p.band,
                "p_att_us": None if p is None else round(p.p_us, 6),
                "p_att_ss": None if p is None else round(p.p_ss, 6)}


@dataclass(frozen=True)
class PredictOutcome:
    studies: tuple[StudyResult, ...]
    model_id: str
    segmenter_note: str = ""  # the segmenter for studies without masks, in words

    def records(self) -> list[dict[str, Any]]:
        return [s.record(self.model_id) for s in self.studies]

    def summary(self) -> list[str]:
        lines = []
        for s in self.studies:
            if s.prediction is None:
                lines.append(f"{s.scan_id or s.study_id}: refused ({s.reason})")
            else:
                p = s.prediction
                weaker = " (weaker segmenter)" if s.weaker_segmenter else ""
                lines.append(f"{s.scan_id}: {p.decision} (P(COVID) {p.probability:.3f}; "
                             f"US {p.p_us:.3f}, SS {p.p_ss:.3f}; infection ratio "
                             f"{p.infection_ratio:.4f} by {s.segmenter}{weaker}, band {p.band})")
        note = [self.segmenter_note] if self.segmenter_note else []
        return [*lines, *note, f"model {self.model_id}"]


def segmenter_note(models: TrainedModels) -> str:
    """One line on the segmenter of studies without masks: which, and how good."""
    seg = models.segmenter
    held = seg.held_out
    quality = (f"held-out lung Dice {held['lung_dice']:.3f}, infection Dice "
               f"{held['infection_dice']:.3f}, ratio error {100 * held['ratio_rel_error']:.1f} %"
               if held else "not measured on held-out scans")
    if not seg.weaker:
        return f"masks by {seg.tag}, the segmenter the model was trained with ({quality})"
    what = ("the VB-Net trained on the scans with ground truth" if seg.method == "vbnet"
            else "the classical segmenter (no VB-Net: no scan with ground truth to train one)")
    return (f"studies without masks: segmented by {seg.tag}, {what} ({quality}); weaker "
            f"than the {models.segmentation.method} masks the model was trained on, so their "
            "infection ratio and band are less certain")


@task(name="predict_task", cache_policy=NO_CACHE, persist_result=False)
def predict_task(request: PredictRequest, ingest: IngestConfig, threshold: float,
                 data_root: Path, device: str, run_id: str | None = None) -> PredictOutcome:
    """Predict every study under the request's DICOM folder with the promoted model (its
    own segmenter, pre-processing and groups settings)."""
    logger = get_run_logger()
    key = resolve_pseudonym_key(ingest, os.environ.get(KEY_ENV))
    with StageRun.open(data_root, run_id) as run:
        models = load_trained_models(run, threshold, device)
        files = list_export(request.dicom_root)
        records, _ = index_headers(files)
        plan = choose_series(records, ingest)
        results = []
        with StageProgress("predicting studies", len(plan.studies), unit="studies") as progress:
            for study in plan.studies.itertuples(index=False):
                results.append(_study(request, models, plan, study, key, torch.device(device)))
                progress.advance()
        outcome = PredictOutcome(tuple(results), models.model_id, segmenter_note(models))
        _write_table(run, outcome)
    logger.info("predicted %d of %d studies", sum(r.prediction is not None for r in results),
                len(results))
    return outcome


def _study(request: PredictRequest, models: TrainedModels, plan: Any, study: Any, key: bytes,
           device: torch.device) -> StudyResult:
    study_id = pseudonymise("study", str(study.study_instance_uid), key)
    series_uid = str(study.chosen_series_uid)
    if not series_uid:
        return StudyResult("", study_id, "refused", f"{study.reason}: {study.message}")
    scan_id = pseudonymise("series", series_uid, key)
    try:
        image = decode_series(plan.slice_paths[series_uid], scan_id=scan_id).to_sitk()
        lung, infection, segmenter, weaker = _masks(request, models, image, series_uid,
                                                    scan_id)
        prediction = predict_study(image, lung, infection, ensemble=models.ensemble,
                                   preprocess=models.preprocess, groups=models.groups,
                                   device=device, scan_id=scan_id)
    except DsanError as error:
        return StudyResult(scan_id, study_id, "refused", str(error))
    _write_study(request.out / scan_id, image, prediction, scan_id)
    return StudyResult(scan_id, study_id, "predicted", "", prediction, segmenter, weaker)


def _masks(request: PredictRequest, models: TrainedModels, image: sitk.Image, series_uid: str,
           scan_id: str) -> tuple[np.ndarray, np.ndarray, str, bool]:
    """Lung and infection masks, the segmenter's tag and whether it is weaker than what
    the model was trained on: the request's masks for a model trained on imported masks
    (methods ground_truth, external) when it has this study's; else the data root's
    segmenter for studies without masks (`TrainedModels.segmenter`)."""
    imported = models.segmentation.method in ("ground_truth", "external")
    files = {kind: request.masks / f"{series_uid}_{kind}.nii.gz"
             for kind in ("lung", "infection")} if request.masks else {}
    if imported and files and all(path.is_file() for path in files.values()):
        arrays = [image_array(conform_mask(read_image(path), image, scan_id=scan_id,
                                           kind=kind))
                  for kind, path in files.items()]
        return arrays[0], arrays[1] & arrays[0], "masks", False
    seg = models.segmenter
    config = models.segmentation.model_copy(update={"method": seg.method})
    result = segment_scan(image, config, scan_id=scan_id, model=seg.network,
                          infection_threshold=seg.infection_threshold, device=models.device)
    return result.lung, result.infection, seg.tag, seg.weaker


def _write_study(folder: Path, image: sitk.Image, prediction: StudyPrediction,
                 scan_id: str) -> None:
    write_image(image, folder / "ct.nii.gz")
    write_array(prediction.attention, image, folder / "attention.nii.gz")
    title = (f"{scan_id}: {prediction.decision}, P(COVID) {prediction.probability:.3f}, "
             f"infection ratio {prediction.infection_ratio:.4f}")
    write_figure(attention_overlay_figure(image_array(image),
                                          prediction.attention, image.GetSpacing(),
                                          title=title), folder / "overlay.png")


def _write_table(run: StageRun, outcome: PredictOutcome) -> None:
    now = datetime.now(UTC)
    rows = pd.DataFrame([{**record, "predicted_at": now,
                          "attention_file": f"{record['scan_id']}/attention.nii.gz"
                          if record["status"] == "predicted" else None,
                          "overlay_file": f"{record['scan_id']}/overlay.png"
                          if record["status"] == "predicted" else None}
                         for record in outcome.records()], columns=PREDICTIONS_NEW.names)
    if table_exists(run.layout, "predictions_new"):
        try:
            earlier = read_table(run.layout, "predictions_new")
        except SchemaError:  # written before the segmenter columns: kept, without them
            earlier = pd.read_parquet(run.layout.table("predictions_new")).reindex(
                columns=PREDICTIONS_NEW.names)
        kept = earlier[~earlier["scan_id"].isin(set(rows["scan_id"]) - {""})]
        rows = pd.concat([kept, rows], ignore_index=True)
    write_table(run.layout, "predictions_new", rows)


# --- the promoted ensemble, loaded from its record (storage.registry) -------------------

@dataclass(frozen=True)
class PredictSegmenter:
    """What segments a study that comes without masks: a VB-Net (`network`) or the
    classical segmenter (`network` None). `weaker`: it stands in for the imported masks
    the classifier was trained on (segmentation methods ground_truth and external)."""

    method: str  # vbnet | classical
    tag: str  # vbnet__<version> | classical__<settings>
    network: torch.nn.Module | None
    infection_threshold: float
    weaker: bool
    held_out: dict[str, Any] | None  # its medians on the held-out scans, when measured


@dataclass(frozen=True)
class TrainedModels:
    ensemble: TrainedEnsemble
    model_id: str
    segmentation: SegmentationConfig
    preprocess: PreprocessConfig
    groups: GroupsConfig
    vbnet: torch.nn.Module | None
    infection_threshold: float
    device: torch.device
    segmenter: PredictSegmenter


def load_trained_models(run: StageRun, threshold: float, device: str) -> TrainedModels:
    """The promoted ensemble; StageError naming what to run when there is none."""
    record = require_promoted(run.layout)
    configs = record["configs"]
    train = TrainConfig.model_validate(configs["train"])
    segmentation = SegmentationConfig.model_validate(configs["segmentation"])
    models: dict[str, list[DSANet]] = {ATT_US: [], ATT_SS: []}
    for entry in sorted(record["checkpoints"], key=lambda c: (c["branch"], c["fold"])):
        if entry["branch"] in models:
            checkpoint = load_checkpoint(run.layout.resolve(entry["path"]))
            models[entry["branch"]].append(load_classifier(checkpoint, train,
                                                           torch.device(device)))
    vbnet = None
    if segmentation.method == "vbnet":
        version = record["segmenter"]["version"][0]
        vbnet = _load_vbnet(run, version, segmentation, device)
    weights = EnsembleWeights(record["weights"]["w_extreme"], record["weights"]["w_middle"])
    # The threshold the evaluation chose (records from before it: the configured one).
    threshold = float(record.get("decision", {}).get("threshold", threshold))
    ensemble = TrainedEnsemble(models[ATT_US], models[ATT_SS], weights, threshold,
                               train.mixed_precision)
    infection_threshold = record["segmenter"]["infection_threshold"] or 0.5
    return TrainedModels(ensemble, record["model_id"], segmentation,
                         PreprocessConfig.model_validate(configs["preprocess"]),
                         GroupsConfig.model_validate(configs["groups"]), vbnet,
                         infection_threshold, torch.device(device),
                         _predict_segmenter(run, record, segmentation, vbnet,
                                            infection_threshold, device))


def _load_vbnet(run: StageRun, version: str, segmentation: SegmentationConfig,
                device: str) -> torch.nn.Module:
    path = run.layout.checkpoint("vbnet", version, "best")
    if not path.exists():
        raise StageError(f"the promoted model's VB-Net {version} is missing from this data "
                         "root (models/vbnet__...): run dsan run again")
    return load_vbnet(load_checkpoint(path), segmentation.vbnet, torch.device(device))


def _predict_segmenter(run: StageRun, record: dict[str, Any], segmentation: SegmentationConfig,
                       vbnet: torch.nn.Module | None, threshold: float,
                       device: str) -> PredictSegmenter:
    """The record's segmenter for studies without masks (records written before it was
    recorded: the configured one, or the classical one for imported masks)."""
    card = record["segmenter"].get("predict") or {}
    held = card.get("held_out")
    classical = f"classical__{segmentation.classical.fingerprint()}"
    if segmentation.method == "vbnet":
        tag = f"vbnet__{record['segmenter']['version'][0]}"
        return PredictSegmenter("vbnet", tag, vbnet, threshold, False, held)
    if segmentation.method == "classical":
        return PredictSegmenter("classical", classical, None, 0.5, False, held)
    if card.get("method") == "vbnet":
        network = _load_vbnet(run, str(card["version"]), segmentation, device)
        return PredictSegmenter("vbnet", str(card["tag"]), network,
                                float(card.get("infection_threshold") or 0.5), True, held)
    return PredictSegmenter("classical", classical, None, 0.5, True, held)
