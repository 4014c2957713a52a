"""VB-Net training: Dice + CE loss on patches (`patches`), sliding-window validation,
and the VB-Net's part of the shared epoch loop (`dsan_core.training_loop`).

Arrays are (z, y, x); labels 0 background, 1 lung, 2 infection.

Epochs are scored at the majority rule (infection probability > 0.5). Validation
also records the threshold from `THRESHOLD_GRID` that maximises mean infection Dice
over the validation cases; the best epoch's is kept in the checkpoint and used at
inference when `VBNetConfig.infection_threshold` is "calibrate" (the threshold is an
inference setting only: changing it never retrains). Measured on the demo cohort
(benchmarks/README.md): calibration helps an under-trained model, which under-segments
faint lesion borders, and hurts a well-trained one, since a handful of validation
scans pick a noisy threshold.

Reproducibility: the shared loop seeds the initial weights from `config.seed`, and torch
and the epoch's patch generator from (config.seed, epoch) at the start of every epoch,
so a run resumed from an end-of-epoch checkpoint draws the same patches as an
uninterrupted one (bit-identical on CPU).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dsan_core.config import VBNetConfig
from dsan_core.errors import ModelError
from dsan_core.segmentation.inference import masks_from_probs, sliding_window_probs
from dsan_core.segmentation.metrics import dice
from dsan_core.segmentation.patches import CaseCache, SegCase, sample_batch
from dsan_core.segmentation.vbnet import VBNet, build_vbnet
from dsan_core.training_loop import check_format, run_epochs, seed_initialisation

CHECKPOINT_FORMAT = "dsan-vbnet-checkpoint-v1"
#: Without validation cases: the plain majority rule.
DEFAULT_THRESHOLD = 0.5
#: Infection probability thresholds tried by calibration.
THRESHOLD_GRID: tuple[float, ...] = tuple(round(0.1 + 0.05 * i, 2) for i in range(13))


@dataclass(frozen=True)
class EpochReport:
    """One finished epoch (1-based); val dice values are NaN without validation cases."""

    epoch: int
    learning_rate: float
    train_loss: float
    val_lung_dice: float
    val_infection_dice: float
    score: float
    best_epoch: int
    best_score: float
    is_best: bool
    seconds: float
    #: The threshold that maximised this epoch's mean validation infection Dice.
    infection_threshold: float = 0.5
    #: Mean validation infection Dice at `infection_threshold`.
    val_infection_dice_calibrated: float = float("nan")


@dataclass
class TrainResult:
    """The model carries the best epoch's weights; `checkpoint` is the last epoch's."""

    model: VBNet
    best_epoch: int
    best_score: float
    history: list[EpochReport]
    checkpoint: dict[str, Any]
    #: The best epoch's calibrated infection threshold (0.5 without validation cases).
    infection_threshold: float


# --- loss -------------------------------------------------------------------------------


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy + soft Dice on the lung (classes 1+2) and infection (class 2) regions.

    Dice is computed over the whole batch, so a batch without infection still
    penalises false-positive infection probability. The two Dice terms are summed,
    not averaged: with cross-entropy alone a class covering ~0.1 % of a patch stays
    on a long plateau (measured: no infection voxel predicted after 200 steps).
    """
    ce = F.cross_entropy(logits, labels.long())
    probs = torch.softmax(logits.float(), dim=1)
    regions = [
        (probs[:, 1] + probs[:, 2], (labels >= 1).float()),
        (probs[:, 2], (labels == 2).float()),
    ]
    dice_losses = []
    for p, t in regions:
        inter = (p * t).sum()
        dice_losses.append(1 - (2 * inter + 1.0) / (p.sum() + t.sum() + 1.0))
    return ce + torch.stack(dice_losses).sum()


# --- training and validation --------------------------------------------------------


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scaler: torch.amp.GradScaler, images: torch.Tensor, labels: torch.Tensor,
               *, use_amp: bool) -> torch.Tensor:
    """One optimiser step on a batch (autocast + gradient scaling when `use_amp`); the loss."""
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=images.device.type, enabled=use_amp):
        loss = segmentation_loss(model(images), labels)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss


def _epoch_lr(config: VBNetConfig, epoch: int) -> float:
    # Polynomial decay (nnU-Net's) keeps the schedule a pure function of the epoch.
    return config.learning_rate * (1 - epoch / config.epochs) ** 0.9


def _dice_per_threshold(probs: torch.Tensor, lung: torch.Tensor, truth: torch.Tensor,
                        thresholds: Sequence[float]) -> np.ndarray:
    # Dice of (lung & p_infection > t) against `truth` for every t; 1 when both are empty.
    p = probs[2][lung]
    target = truth[lung]
    n_truth_outside = int(truth.sum()) - int(target.sum())
    scores = []
    for t in thresholds:
        pred = p > t
        total = int(pred.sum()) + int(target.sum()) + n_truth_outside
        inter = int((pred & target).sum())
        scores.append(1.0 if total == 0 else 2.0 * inter / total)
    return np.asarray(scores)


def _validate(
    model: VBNet, cache: CaseCache, n_cases: int, config: VBNetConfig, device: torch.device
) -> tuple[float, float, float, float]:
    """Mean lung Dice, mean infection Dice at 0.5, the calibrated threshold and its Dice."""
    lung_scores, inf_scores = [], []
    for index in range(n_cases):
        case = cache.get(index)
        probs = sliding_window_probs(model, case.image, config, device)
        lung, _ = masks_from_probs(probs)
        labels = torch.from_numpy(case.labels)
        lung_scores.append(dice(lung.numpy(), case.labels >= 1))
        inf_scores.append(_dice_per_threshold(probs, lung, labels == 2, THRESHOLD_GRID))
    per_threshold = np.mean(inf_scores, axis=0)
    best = int(np.argmax(per_threshold))
    majority = float(per_threshold[THRESHOLD_GRID.index(0.5)])
    return float(np.mean(lung_scores)), majority, THRESHOLD_GRID[best], float(per_threshold[best])


class _VBNetEpochs:
    """The VB-Net's epochs for `run_epochs`: random patches, Dice + CE, sliding-window
    validation scored at the majority rule."""

    def __init__(self, model: VBNet, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, train: Sequence[SegCase],
                 val: Sequence[SegCase], config: VBNetConfig, device: torch.device) -> None:
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.config, self.device = config, device
        self.use_amp = scaler.is_enabled()
        self.train_cache = CaseCache(train, config, config.cache_capacity)
        self.val_cache = CaseCache(val, config, config.cache_capacity)

    def train_epoch(self, epoch: int, lr: float, rng: np.random.Generator) -> EpochReport:
        started = time.perf_counter()
        self.model.train()
        losses = []
        for _ in range(self.config.steps_per_epoch):
            images, labels = sample_batch(self.train_cache, self.config, rng)
            loss = train_step(self.model, self.optimizer, self.scaler,
                              torch.from_numpy(images).to(self.device),
                              torch.from_numpy(labels).to(self.device), use_amp=self.use_amp)
            losses.append(float(loss.detach()))
        train_loss = float(np.mean(losses))
        threshold, inf_cal = DEFAULT_THRESHOLD, math.nan
        if self.val_cache.cases:
            lung_d, inf_d, threshold, inf_cal = _validate(
                self.model, self.val_cache, len(self.val_cache.cases), self.config, self.device)
            score = (lung_d + inf_d) / 2
        else:
            lung_d = inf_d = math.nan
            score = -train_loss
        return EpochReport(epoch + 1, lr, train_loss, lung_d, inf_d, score, 0, math.nan, False,
                           time.perf_counter() - started, infection_threshold=threshold,
                           val_infection_dice_calibrated=inf_cal)

    def rank(self, report: EpochReport) -> tuple[float, ...]:
        return (report.score if math.isfinite(report.score) else -math.inf,)

    def mark_best(self, report: EpochReport, best: EpochReport, is_best: bool) -> EpochReport:
        return replace(report, best_epoch=best.epoch, best_score=best.score, is_best=is_best)

    def checkpoint_fields(self, best: EpochReport) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict() if self.use_amp else {},
                "best_score": best.score, "best_infection_threshold": best.infection_threshold,
                "config": self.config.model_dump(mode="json")}


def train_vbnet(
    train: Sequence[SegCase],
    val: Sequence[SegCase],
    config: VBNetConfig,
    *,
    device: torch.device,
    resume: dict[str, Any] | None,
    on_epoch_end: Callable[[dict[str, Any], EpochReport], None],
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train a VB-Net on patches; validate with sliding windows after every epoch.

    The epoch score is the mean of validation lung and infection Dice (minus the
    training loss when `val` is empty); the best-scoring epoch's weights are kept.
    `on_epoch_end(checkpoint, report)` gets a dict of tensors, numbers, strings,
    lists and dicts only (loadable with torch.load(weights_only=True); the keys in
    `dsan_core.training_loop`, plus scaler, best_score, best_infection_threshold and
    config); passing it back as `resume` continues after that epoch.
    """
    if not train:
        raise ModelError("VB-Net training needs at least one training case, found none")
    seed_initialisation(config.seed)
    model = build_vbnet(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                                 weight_decay=config.weight_decay)
    use_amp = device.type == "cuda" and config.mixed_precision
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if resume is not None:
        check_format(resume, CHECKPOINT_FORMAT)
        if use_amp and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        log(f"resuming VB-Net training after epoch {resume['epoch']}")

    def end_of_epoch(checkpoint: dict[str, Any], report: EpochReport) -> None:
        log(f"epoch {report.epoch}/{config.epochs} loss {report.train_loss:.4f} val lung dice "
            f"{report.val_lung_dice:.4f} infection dice {report.val_infection_dice:.4f} "
            f"({report.val_infection_dice_calibrated:.4f} at calibrated threshold "
            f"{report.infection_threshold:.2f}) (best epoch {report.best_epoch})")
        on_epoch_end(checkpoint, report)

    plan = _VBNetEpochs(model, optimizer, scaler, train, val, config, device)
    done = run_epochs(plan, model, optimizer, seed=config.seed, epochs=config.epochs,
                      learning_rate=lambda epoch: _epoch_lr(config, epoch),
                      checkpoint_format=CHECKPOINT_FORMAT, report_type=EpochReport,
                      resume=resume, on_epoch_end=end_of_epoch)
    model.load_state_dict(done.best_state)
    model.eval()
    return TrainResult(model, done.best_epoch, done.best.score, done.history, done.checkpoint,
                       done.best.infection_threshold)


def best_weights(result: TrainResult) -> dict[str, Any]:
    """The checkpoint to segment with: the best epoch's weights and threshold (no optimiser
    state), in the same format as the training checkpoints."""
    return {"format": CHECKPOINT_FORMAT, "best_model": result.model.state_dict(),
            "best_epoch": result.best_epoch, "best_score": float(result.best_score),
            "infection_threshold": result.infection_threshold}


def infection_threshold_of(checkpoint: dict[str, Any], config: VBNetConfig) -> float:
    """The infection threshold to segment with: the configured number, else the checkpoint's."""
    if config.infection_threshold != "calibrate":
        return float(config.infection_threshold)
    for key in ("infection_threshold", "best_infection_threshold"):
        if key in checkpoint:
            return float(checkpoint[key])
    raise ModelError("expected a calibrated infection_threshold in the VB-Net checkpoint, found "
                     "none (a checkpoint from an older dsan: retrain, or set "
                     "segmentation.vbnet.infection_threshold to a number)")


def load_vbnet(checkpoint: dict[str, Any], config: VBNetConfig, device: torch.device,
               *, best: bool = True) -> VBNet:
    """A VB-Net in eval mode with the checkpoint's best (or last) weights."""
    model = build_vbnet(config)
    model.load_state_dict(checkpoint["best_model" if best else "model"])
    return model.to(device).eval()
