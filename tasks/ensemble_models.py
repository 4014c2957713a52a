"""The trained ensemble of a data root, loaded for prediction: the fold models of both
attention branches, the searched DS weights, and the segmenter their inputs came from."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from dsan_core.branches import ATT_SS, ATT_US
from dsan_core.classifier import DSANet, load_classifier
from dsan_core.config import SegmentationConfig, TrainConfig
from dsan_core.ensemble import EnsembleWeights
from dsan_core.errors import StageError
from dsan_core.prediction import TrainedEnsemble
from dsan_core.segmentation import infection_threshold_of, load_vbnet
from storage.checkpoints import load_checkpoint
from storage.hashing import hash_json
from storage.tables import read_table, table_exists
from tasks.contract import StageRun


@dataclass(frozen=True)
class TrainedModels:
    ensemble: TrainedEnsemble
    model_id: str  # 16 hex: the checkpoints, the weights and the segmenter together
    segmentation: SegmentationConfig
    vbnet: torch.nn.Module | None
    infection_threshold: float
    device: torch.device


def load_trained_models(run: StageRun, segmentation: SegmentationConfig, train: TrainConfig,
                        threshold: float, device: str) -> TrainedModels:
    """The data root's current ensemble; StageError naming what to run when there is none."""
    weights_path = run.layout.report("ensemble", "weights.json")
    if not table_exists(run.layout, "training_runs") or not weights_path.exists():
        raise StageError("no trained ensemble in this data root: run dsan run (or dsan train "
                         "and dsan ensemble) first")
    runs = read_table(run.layout, "training_runs").sort_values(["branch", "fold"])
    weights = json.loads(weights_path.read_text())
    models: dict[str, list[DSANet]] = {ATT_US: [], ATT_SS: []}
    for row in runs[runs["branch"].isin(list(models))].itertuples(index=False):
        checkpoint = load_checkpoint(run.layout.resolve(row.checkpoint_path))
        models[str(row.branch)].append(load_classifier(checkpoint, train, torch.device(device)))
    if not models[ATT_US] or not models[ATT_SS]:
        raise StageError("the trained ensemble needs att_us and att_ss models: run dsan train")
    vbnet, infection_threshold, segmenter = _segmenter(run, segmentation, device)
    model_id = hash_json({"checkpoints": sorted(runs["checkpoint_hash"]),
                          "weights": [weights["w_extreme"], weights["w_middle"]],
                          "segmenter": segmenter})[:16]
    ensemble = TrainedEnsemble(models[ATT_US], models[ATT_SS],
                               EnsembleWeights(weights["w_extreme"], weights["w_middle"]),
                               threshold, train.mixed_precision)
    return TrainedModels(ensemble, model_id, segmentation, vbnet, infection_threshold,
                         torch.device(device))


def _segmenter(run: StageRun, segmentation: SegmentationConfig,
               device: str) -> tuple[torch.nn.Module | None, float, str]:
    """The VB-Net the infection table was segmented with (method vbnet), its threshold,
    and the segmenter's version."""
    infection = read_table(run.layout, "infection")
    version = str(infection["model_version"].iloc[0]) if len(infection) else segmentation.method
    if segmentation.method != "vbnet":
        return None, 0.5, version
    checkpoint = load_checkpoint(run.layout.checkpoint("vbnet", version, "best"))
    return (load_vbnet(checkpoint, segmentation.vbnet, torch.device(device)),
            infection_threshold_of(checkpoint, segmentation.vbnet), version)
