"""`dsan predict`: new studies through the trained ensemble, no labels needed.

The same series choice, checks and pseudonyms as ingestion (a study that fails a check
is refused with the reason); lung and infection masks from the data root's segmenter
(the trained VB-Net, the classical one, or masks given with the request when the model
was trained on imported masks); then `dsan_core.prediction.predict_study`. Per study
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

from dsan_core.config import (
    IngestConfig,
)
from dsan_core.dicom import (
    choose_series,
    decode_series,
    index_headers,
    list_export,
    pseudonymise,
    resolve_pseudonym_key,
)
from dsan_core.errors import DsanError, MaskError
from dsan_core.plots.prediction import attention_overlay_figure
from dsan_core.prediction import StudyPrediction, predict_study
from dsan_core.segmentation import segment_scan
from dsan_core.segmentation.external import conform_mask
from storage.inputs import PredictRequest
from storage.schemas import PREDICTIONS_NEW
from storage.tables import read_table, table_exists, write_table
from storage.volumes import read_image, write_figure, write_image
from tasks.contract import StageRun
from tasks.ensemble_models import TrainedModels, load_trained_models
from tasks.progress import StageProgress

KEY_ENV = "DSAN_PSEUDONYM_KEY"


@dataclass(frozen=True)
class StudyResult:
    """One study's outcome, by pseudonym only."""

    scan_id: str
    study_id: str
    status: str  # predicted | refused
    reason: str
    prediction: StudyPrediction | None = None

    def record(self, model_id: str) -> dict[str, Any]:
        p = self.prediction
        return {"scan_id": self.scan_id, "study_id": self.study_id, "status": self.status,
                "reason": self.reason, "model_id": model_id,
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

    def records(self) -> list[dict[str, Any]]:
        return [s.record(self.model_id) for s in self.studies]

    def summary(self) -> list[str]:
        lines = []
        for s in self.studies:
            if s.prediction is None:
                lines.append(f"{s.scan_id or s.study_id}: refused ({s.reason})")
            else:
                p = s.prediction
                lines.append(f"{s.scan_id}: {p.decision} (P(COVID) {p.probability:.3f}; "
                             f"US {p.p_us:.3f}, SS {p.p_ss:.3f}; infection ratio "
                             f"{p.infection_ratio:.4f}, band {p.band})")
        return [*lines, f"model {self.model_id}"]


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
        outcome = PredictOutcome(tuple(results), models.model_id)
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
        lung, infection = _masks(request, models, image, series_uid, scan_id)
        prediction = predict_study(image, lung, infection, ensemble=models.ensemble,
                                   preprocess=models.preprocess, groups=models.groups,
                                   device=device, scan_id=scan_id)
    except DsanError as error:
        return StudyResult(scan_id, study_id, "refused", str(error))
    _write_study(request.out / scan_id, image, prediction, scan_id)
    return StudyResult(scan_id, study_id, "predicted", "", prediction)


def _masks(request: PredictRequest, models: TrainedModels, image: sitk.Image, series_uid: str,
           scan_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Lung and infection masks by the data root's segmenter, or the request's masks."""
    if models.segmentation.method in ("vbnet", "classical"):
        result = segment_scan(image, models.segmentation, scan_id=scan_id, model=models.vbnet,
                              infection_threshold=models.infection_threshold,
                              device=models.device)
        return result.lung, result.infection
    files = {kind: (request.masks / f"{series_uid}_{kind}.nii.gz") if request.masks else None
             for kind in ("lung", "infection")}
    if any(path is None or not path.is_file() for path in files.values()):
        raise MaskError(f"the model was trained on {models.segmentation.method} masks: give "
                        "--masks with <SeriesInstanceUID>_{lung,infection}.nii.gz for this "
                        "study, or train a VB-Net (segmentation.method vbnet)", scan=scan_id,
                        reason="missing")
    arrays = [sitk.GetArrayFromImage(conform_mask(read_image(path), image, scan_id=scan_id,
                                                  kind=kind))
              for kind, path in files.items() if path is not None]
    return arrays[0], arrays[1] & arrays[0]


def _write_study(folder: Path, image: sitk.Image, prediction: StudyPrediction,
                 scan_id: str) -> None:
    write_image(image, folder / "ct.nii.gz")
    heat = sitk.GetImageFromArray(prediction.attention)
    heat.CopyInformation(image)
    write_image(heat, folder / "attention.nii.gz")
    title = (f"{scan_id}: {prediction.decision}, P(COVID) {prediction.probability:.3f}, "
             f"infection ratio {prediction.infection_ratio:.4f}")
    write_figure(attention_overlay_figure(sitk.GetArrayViewFromImage(image),
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
        earlier = read_table(run.layout, "predictions_new")
        kept = earlier[~earlier["scan_id"].isin(set(rows["scan_id"]) - {""})]
        rows = pd.concat([kept, rows], ignore_index=True)
    write_table(run.layout, "predictions_new", rows)
