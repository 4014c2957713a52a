"""VB-Net training: lazy cases, class-aware patch sampling, Dice + CE loss, the loop.

Arrays are (z, y, x); spacings (x, y, z) mm; images HU before `prepare_case`.
Labels are 0 background, 1 lung, 2 infection (infection is always lung too).

Epochs are scored at the majority rule (infection probability > 0.5). Validation
also records the threshold from `THRESHOLD_GRID` that maximises mean infection Dice
over the validation cases; the best epoch's is kept in the checkpoint and used at
inference when `VBNetConfig.infection_threshold` is "calibrate" (the threshold is an
inference setting only: changing it never retrains). Measured on the demo cohort
(benchmarks/README.md): calibration helps an under-trained model, which under-segments
faint lesion borders, and hurts a well-trained one, since a handful of validation
scans pick a noisy threshold.

Reproducibility: the patch sampler and torch are re-seeded from (config.seed, epoch)
at the start of every epoch, so a run resumed from an end-of-epoch checkpoint draws
the same patches as an uninterrupted one (bit-identical on CPU).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dsan_core.config import VBNetConfig
from dsan_core.errors import InputError, ModelError
from dsan_core.segmentation.inference import (
    masks_from_probs,
    network_shape,
    pad_to,
    prepare_image,
    resize_nearest,
    sliding_window_probs,
)
from dsan_core.segmentation.metrics import dice
from dsan_core.segmentation.vbnet import VBNet, build_vbnet

CHECKPOINT_FORMAT = "dsan-vbnet-checkpoint-v1"
#: Infection probability thresholds tried by calibration.
THRESHOLD_GRID: tuple[float, ...] = tuple(round(0.1 + 0.05 * i, 2) for i in range(13))


@dataclass(frozen=True)
class SegVolume:
    """One labelled scan: hu float32, lung and infection uint8, all (z, y, x); spacing (x, y, z)."""

    hu: np.ndarray
    lung: np.ndarray
    infection: np.ndarray
    spacing: tuple[float, float, float]


@dataclass(frozen=True)
class SegCase:
    """A scan by pseudonymous id; `load` reads it only when needed (paper-size volumes)."""

    case_id: str
    load: Callable[[], SegVolume]


@dataclass(frozen=True)
class PreparedCase:
    """A case on the network grid: image float32 in [0, 1], labels uint8 0/1/2, (z, y, x)."""

    case_id: str
    image: np.ndarray
    labels: np.ndarray


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


def prepare_case(volume: SegVolume, config: VBNetConfig, *, case_id: str = "") -> PreparedCase:
    """Resample a labelled scan to `config.spacing_mm` (image linear, labels nearest)."""
    shapes = {volume.hu.shape, volume.lung.shape, volume.infection.shape}
    if len(shapes) != 1 or volume.hu.ndim != 3:
        raise InputError(
            f"expected hu, lung and infection of one 3-D shape, found {sorted(shapes)}",
            scan=case_id or None,
        )
    lung = volume.lung.astype(bool) | volume.infection.astype(bool)
    labels = lung.astype(np.uint8) + (volume.infection.astype(bool) & lung).astype(np.uint8)
    shape = network_shape(volume.hu.shape, volume.spacing, config.spacing_mm)
    image = prepare_image(volume.hu, volume.spacing, config)
    return PreparedCase(case_id, image, resize_nearest(labels, shape))


# --- patch sampling -------------------------------------------------------------------


def sample_patch(
    case: PreparedCase,
    patch: Sequence[int],
    infection_fraction: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """One (image, labels) patch of size `patch`, zero-padded when the case is smaller.

    With probability `infection_fraction` the patch is centred on a random infection
    voxel (a lung voxel when there is none); otherwise on a random lung voxel or a
    uniformly random position, half and half.
    """
    image = pad_to(case.image, patch)
    labels = pad_to(case.labels, patch)
    draw = rng.random()
    candidates: np.ndarray | None = None
    if draw < infection_fraction:
        candidates = np.flatnonzero(labels == 2)
        if candidates.size == 0:
            candidates = np.flatnonzero(labels >= 1)
    elif draw < infection_fraction + (1 - infection_fraction) / 2:
        candidates = np.flatnonzero(labels >= 1)
    centre: tuple[int, ...]
    if candidates is not None and candidates.size:
        flat = int(candidates[rng.integers(candidates.size)])
        centre = tuple(int(c) for c in np.unravel_index(flat, labels.shape))
    else:
        centre = tuple(int(rng.integers(n)) for n in labels.shape)
    starts = [
        int(min(max(c - p // 2, 0), n - p))
        for c, p, n in zip(centre, patch, labels.shape, strict=True)
    ]
    window = tuple(slice(s, s + p) for s, p in zip(starts, patch, strict=True))
    return image[window], labels[window]


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


# --- training loop ----------------------------------------------------------------------


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


class _CaseCache:
    """Prepared cases by index, least recently used evicted beyond `capacity`."""

    def __init__(self, cases: Sequence[SegCase], config: VBNetConfig, capacity: int) -> None:
        self.cases, self.config, self.capacity = cases, config, capacity
        self._items: OrderedDict[int, PreparedCase] = OrderedDict()

    def get(self, index: int) -> PreparedCase:
        if index in self._items:
            self._items.move_to_end(index)
            return self._items[index]
        case = self.cases[index]
        prepared = prepare_case(case.load(), self.config, case_id=case.case_id)
        self._items[index] = prepared
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return prepared


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
    model: VBNet, cache: _CaseCache, n_cases: int, config: VBNetConfig, device: torch.device
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


def _rng_states(device: torch.device) -> dict[str, torch.Tensor]:
    states = {"torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["torch_cuda"] = torch.cuda.get_rng_state(device)
    return states


def _clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def train_vbnet(
    train: Sequence[SegCase],
    val: Sequence[SegCase],
    config: VBNetConfig,
    *,
    device: torch.device,
    resume: dict[str, Any] | None,
    on_epoch_end: Callable[[dict[str, Any], EpochReport], None],
    log: Callable[[str], None] = print,
    cache_capacity: int = 256,
    weight_decay: float = 1e-5,
) -> TrainResult:
    """Train a VB-Net on patches; validate with sliding windows after every epoch.

    The epoch score is the mean of validation lung and infection Dice (minus the
    training loss when `val` is empty); the best-scoring epoch's weights are kept.
    `on_epoch_end(checkpoint, report)` gets a dict of tensors, numbers, strings,
    lists and dicts only (loadable with torch.load(weights_only=True)); passing it
    back as `resume` continues after that epoch.
    """
    if not train:
        raise ModelError("VB-Net training needs at least one training case, found none")
    torch.manual_seed(config.seed)
    model = build_vbnet(config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                                 weight_decay=weight_decay)
    use_amp = device.type == "cuda" and config.mixed_precision
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    start_epoch, best_epoch, best_score = 0, 0, -math.inf
    default_threshold = 0.5  # without validation cases: the plain majority rule
    best_threshold = default_threshold
    best_state = _clone_state(model)
    history: list[EpochReport] = []
    if resume is not None:
        if resume.get("format") != CHECKPOINT_FORMAT:
            raise ModelError(f"expected a {CHECKPOINT_FORMAT} checkpoint, found "
                             f"{resume.get('format')!r}")
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        if use_amp and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        start_epoch = int(resume["epoch"])
        best_epoch, best_score = int(resume["best_epoch"]), float(resume["best_score"])
        best_state = resume["best_model"]
        best_threshold = float(resume.get("best_infection_threshold", default_threshold))
        history = [EpochReport(**item) for item in resume["history"]]
        log(f"resuming VB-Net training after epoch {start_epoch}")

    train_cache = _CaseCache(train, config, cache_capacity)
    val_cache = _CaseCache(val, config, cache_capacity)
    checkpoint: dict[str, Any] = dict(resume) if resume is not None else {}
    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed * 100_003 + epoch)
        lr = _epoch_lr(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        losses = []
        for _ in range(config.steps_per_epoch):
            pairs = [
                sample_patch(train_cache.get(int(rng.integers(len(train)))), config.patch_size,
                             config.infection_patch_fraction, rng)
                for _ in range(config.batch_size)
            ]
            images = torch.from_numpy(np.stack([p[0] for p in pairs])[:, None]).to(device)
            labels = torch.from_numpy(np.stack([p[1] for p in pairs])).to(device)
            loss = train_step(model, optimizer, scaler, images, labels, use_amp=use_amp)
            losses.append(float(loss.detach()))
        train_loss = float(np.mean(losses))
        threshold, inf_cal = default_threshold, float("nan")
        if val:
            lung_d, inf_d, threshold, inf_cal = _validate(model, val_cache, len(val), config,
                                                          device)
            score = (lung_d + inf_d) / 2
        else:
            lung_d = inf_d = float("nan")
            score = -train_loss
        is_best = score > best_score
        if is_best:
            best_epoch, best_score, best_state = epoch + 1, score, _clone_state(model)
            best_threshold = threshold
        report = EpochReport(epoch + 1, lr, train_loss, lung_d, inf_d, score, best_epoch,
                             best_score, is_best, time.perf_counter() - started,
                             infection_threshold=threshold,
                             val_infection_dice_calibrated=inf_cal)
        history.append(report)
        log(f"epoch {epoch + 1}/{config.epochs} loss {train_loss:.4f} val lung dice {lung_d:.4f} "
            f"infection dice {inf_d:.4f} ({inf_cal:.4f} at calibrated threshold {threshold:.2f}) "
            f"(best epoch {best_epoch})")
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            "epoch": epoch + 1,
            "model": _clone_state(model),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if use_amp else {},
            "best_epoch": best_epoch,
            "best_score": best_score,
            "best_model": best_state,
            "best_infection_threshold": best_threshold,
            "history": [asdict(item) for item in history],
            "rng": _rng_states(device),
            "config": config.model_dump(mode="json"),
        }
        on_epoch_end(checkpoint, report)
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, best_epoch, best_score, history, checkpoint, best_threshold)


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
