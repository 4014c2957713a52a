"""The promoted ensemble of a data root, loaded for prediction from its record
(tasks.models): the fold models of both attention branches, the DS weights, the
segmenter, and the pre-processing and group settings it was trained with."""

from __future__ import annotations

from dataclasses import dataclass

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
class TrainedModels:
    ensemble: TrainedEnsemble
    model_id: str
    segmentation: SegmentationConfig
    preprocess: PreprocessConfig
    groups: GroupsConfig
    vbnet: torch.nn.Module | None
    infection_threshold: float
    device: torch.device


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
        vbnet = load_vbnet(load_checkpoint(run.layout.checkpoint("vbnet", version, "best")),
                           segmentation.vbnet, torch.device(device))
    weights = EnsembleWeights(record["weights"]["w_extreme"], record["weights"]["w_middle"])
    ensemble = TrainedEnsemble(models[ATT_US], models[ATT_SS], weights, threshold,
                               train.mixed_precision)
    return TrainedModels(ensemble, record["model_id"], segmentation,
                         PreprocessConfig.model_validate(configs["preprocess"]),
                         GroupsConfig.model_validate(configs["groups"]), vbnet,
                         record["segmenter"]["infection_threshold"] or 0.5,
                         torch.device(device))
