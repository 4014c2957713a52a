"""The promoted ensemble of a data root, loaded for prediction from its record
(tasks.models): the fold models of both attention branches, the DS weights, the
segmenter, and the pre-processing and group settings it was trained with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from dsan_core.branches import ATT_SS, ATT_US
from dsan_core.classifier import DSANet, load_classifier
from dsan_core.config import GroupsConfig, PreprocessConfig, SegmentationConfig, TrainConfig
from dsan_core.ensemble import EnsembleWeights
from dsan_core.errors import StageError
from dsan_core.prediction import TrainedEnsemble
from dsan_core.segmentation import load_vbnet
from storage.checkpoints import load_checkpoint
from tasks.contract import StageRun
from tasks.models import promoted_record


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
    record = promoted_record(run)
    if record is None:
        raise StageError("no trained ensemble in this data root: run dsan run (DICOM to a "
                         "promoted model) first")
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
