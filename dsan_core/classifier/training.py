"""DSAN training for one (fold, branch): the loss, one step, and the epoch loop.

Branches (METHOD.md "Two sampling strategies", "Evaluation"):

    att_us    attention RN34, uniform sampling       L = L_c + lambda * L_ex
    att_ss    attention RN34, size-balanced sampling L = L_c + lambda * L_ex
    rn34_us   the RN34 baseline, uniform sampling    L = L_c

L_c is binary cross-entropy on the COVID logit; L_ex the attention loss on COVID
scans (`attention.attention_loss`). Adam (beta1 0.9) with coupled weight decay, the
learning rate stepped down by `lr_gamma` every `lr_step_epochs` epochs (StepLR as a
pure function of the epoch), bf16 autocast on CUDA when `mixed_precision`.

The fold's validation scans never enter this loop: their predictions are the
out-of-fold set the evaluation reports, so the caller predicts them with the returned
model. The kept epoch is chosen on the training folds alone (`selection`): with
`epoch_selection` "inner", the AUC and mean BCE (the classification loss only, so the
three branches are comparable) of an inner validation split of the training patients
after every epoch, the best AUC kept, ties broken by the lower loss, then by the
earlier epoch, a NaN AUC ranking below every number; with "last", the last epoch.

Reproducibility: the network is initialised from (seed, "init"); the sampler draws
epoch e's order from (seed, e) and torch is re-seeded from (seed, e) at the start of
every epoch, so a run resumed from an end-of-epoch checkpoint equals an uninterrupted
one (bit-identical on CPU; CUDA kernels may add non-determinism).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch.utils.data import DataLoader

from dsan_core.branches import ATT_SS, RN34_US, TRAINED
from dsan_core.classifier.attention import attention_loss, soft_attention
from dsan_core.classifier.checkpoints import (
    CHECKPOINT_FORMAT,
    build_classifier,
    check_format,
    cpu_copy,
    model_state,
)
from dsan_core.classifier.data import ClassifierCase, check_cases, make_loader
from dsan_core.classifier.inference import (
    autocast_for,
    logits_from_loader,
    predict_logits,
    to_network_input,
)
from dsan_core.classifier.network import DSANet, DSANetOutput
from dsan_core.classifier.samplers import SizeBalancedSampler, UniformSampler
from dsan_core.classifier.selection import (
    SelectionSplit,
    selection_key,
    selection_scores,
    selection_split,
)
from dsan_core.config import TrainConfig
from dsan_core.errors import InputError, ModelError
from dsan_core.groups import SAMPLING_GROUPS

#: Tags that keep the seed streams of initialisation and epochs apart.
_INIT_STREAM, _EPOCH_STREAM = 0x1A17, 0xE90C


@dataclass(frozen=True)
class ClassifierEpochReport:
    """One finished epoch (1-based). loss = loss_c + lambda * loss_ex, each the mean of
    the epoch's batch losses weighted by batch size (L_ex of a batch without COVID is
    0); loss_ex is NaN for the baseline; select_* are the inner validation split's AUC
    and mean BCE (NaN with epoch_selection "last")."""

    epoch: int
    lr: float
    loss: float
    loss_c: float
    loss_ex: float
    select_auc: float
    select_loss: float
    seconds: float
    best_epoch: int
    best_select_auc: float
    is_best: bool


@dataclass
class ClassifierTrainResult:
    """`model` carries the kept epoch's weights (eval mode); `checkpoint` is the last one.
    `n_fit` scans trained the network, `n_select` chose its epoch (0 for "last")."""

    model: DSANet
    branch: str
    best_epoch: int
    select_auc: float
    select_loss: float
    history: list[ClassifierEpochReport]
    checkpoint: dict[str, Any]
    #: The SS weights W per sampling group ({} for uniform sampling).
    sampler_weights: dict[str, float]
    n_fit: int
    n_select: int


def uses_attention(branch: str) -> bool:
    """Whether `branch` trains with the attention loss."""
    _check_branch(branch)
    return branch != RN34_US


def _check_branch(branch: str) -> None:
    if branch not in TRAINED:
        raise ModelError(f"expected a branch in {list(TRAINED)}, found {branch!r}")


def branch_seed(base_seed: int, fold: int | str, branch: str) -> int:
    """A seed for one (fold, branch), stable across processes and Python versions."""
    _check_branch(branch)
    digest = hashlib.sha256(f"{int(base_seed)}/{fold}/{branch}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _derived_seed(seed: int, stream: int, epoch: int = 0) -> int:
    state = np.random.SeedSequence([int(seed), stream, int(epoch)]).generate_state(2)
    return (int(state[0]) << 31) ^ int(state[1])


def epoch_learning_rate(config: TrainConfig, epoch: int) -> float:
    """The learning rate of 0-based `epoch` (torch's StepLR, as a function)."""
    return config.learning_rate * config.lr_gamma ** (epoch // config.lr_step_epochs)


def classifier_loss(
    out: DSANetOutput,
    labels: torch.Tensor,
    infection: torch.Tensor | None,
    config: TrainConfig,
    *,
    attention: bool,
    input_size: Sequence[int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L, L_c, L_ex) in float32; L_ex is NaN (and not in L) when `attention` is off."""
    loss_c = F.binary_cross_entropy_with_logits(out.logit.float(), labels.float())
    if not attention:
        return loss_c, loss_c, torch.full_like(loss_c, math.nan)
    if infection is None:
        raise ModelError("the attention loss needs the infection masks, found none")
    soft = soft_attention(out.cam, input_size, config.attention_alpha, config.attention_beta)
    loss_ex = attention_loss(soft, infection, labels > 0.5)
    return loss_c + config.attention_lambda * loss_ex, loss_c, loss_ex


def train_step(
    model: DSANet,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Any],
    config: TrainConfig,
    *,
    attention: bool,
    device: torch.device,
) -> torch.Tensor:
    """One optimiser step; returns [L, L_c, L_ex] (3,) detached, on `device` (no sync)."""
    x = to_network_input(batch["image"], device, channels_last=config.channels_last_3d)
    labels = batch["label"].to(device, non_blocking=True)
    infection = batch["infection"].to(device, non_blocking=True) != 0 if attention else None
    if config.augment:
        x, infection = mirror_left_right(x, infection)
        if config.intensity_jitter > 0:
            x = shift_lung_intensity(x, config.intensity_jitter)
    optimizer.zero_grad(set_to_none=True)
    with autocast_for(device, config.mixed_precision):
        out = model(x)
    # Losses outside autocast: the soft mask's sigmoid(100 * ...) needs float32.
    loss, loss_c, loss_ex = classifier_loss(out, labels, infection, config,
                                            attention=attention, input_size=x.shape[2:])
    loss.backward()
    optimizer.step()
    return torch.stack([loss, loss_c, loss_ex]).detach()


def mirror_left_right(x: torch.Tensor, infection: torch.Tensor | None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each scan of a (B, 1, z, y, x) batch mirrored along x (left-right) with
    probability 1/2, its infection mask with it. Drawn from torch's global generator,
    which the loop reseeds every epoch, so a resumed run draws the same flips."""
    flip = torch.rand(x.shape[0]) < 0.5
    if not bool(flip.any()):
        return x, infection
    index = flip.nonzero().flatten().to(x.device)
    x = x.clone()
    x[index] = x[index].flip(-1)
    if infection is not None:
        infection = infection.clone()
        infection[index] = infection[index].flip(-1)
    return x, infection


def shift_lung_intensity(x: torch.Tensor, amount: float) -> torch.Tensor:
    """Each scan of a (B, 1, z, y, x) batch with its lung voxels (those above 0: the input
    is lung-masked) shifted by one offset from U(-amount, amount), clipped to [0, 1], the
    outside left at 0. Drawn from torch's global generator, reseeded every epoch."""
    offsets = (torch.rand(x.shape[0]) * 2.0 - 1.0) * amount
    shifted = (x + offsets.to(x.device, x.dtype).view(-1, 1, 1, 1, 1)).clamp(0.0, 1.0)
    return torch.where(x > 0, shifted, x)


def _train_epoch(
    model: DSANet, optimizer: torch.optim.Optimizer, loader: DataLoader[dict[str, Any]],
    config: TrainConfig, *, attention: bool, device: torch.device,
) -> tuple[float, float, float]:
    """One pass over `loader`: the epoch's (L, L_c, L_ex), batch means weighted by size."""
    model.train()
    # Sums stay on the device: one sync per epoch, not one per step.
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    n_seen = 0
    for batch in loader:
        losses = train_step(model, optimizer, batch, config, attention=attention, device=device)
        n = int(batch["label"].shape[0])
        sums += losses.double() * n
        n_seen += n
    loss, loss_c, loss_ex = (sums / max(n_seen, 1)).tolist()
    return loss, loss_c, loss_ex


def recalibrate_batch_norm(model: DSANet, loader: DataLoader[dict[str, Any]], *,
                           device: torch.device, mixed_precision: bool,
                           channels_last: bool = False) -> None:
    """Replace BatchNorm's running statistics by the training set's, computed with the
    epoch's final weights ("precise BN", Wu & Johnson 2021).

    With a few scans per batch the running averages follow noisy batch statistics of
    weights that kept changing, so eval-mode outputs drift far from training-mode ones
    (validation losses jumping 10x between epochs on the demo). One forward pass over
    the training scans, in train mode and without gradients, averages every batch's
    statistics with equal weight (momentum None).
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad(), autocast_for(device, mixed_precision):
        for batch in loader:
            model(to_network_input(batch["image"], device, channels_last=channels_last))
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum


def _make_sampler(
    train: Sequence[ClassifierCase], branch: str, seed: int, config: TrainConfig,
    fold: int | str | None,
) -> tuple[UniformSampler | SizeBalancedSampler, dict[str, Any]]:
    counts = {g: sum(case.sampling_group == g for case in train) for g in SAMPLING_GROUPS}
    if branch != ATT_SS:
        uniform = UniformSampler(len(train), seed=seed)
        return uniform, {"kind": "uniform", "weights": {}, "group_counts": counts,
                         "num_samples": len(uniform)}
    try:
        balanced = SizeBalancedSampler(
            [case.sampling_group for case in train], seed=seed,
            num_samples=config.balanced_samples_per_epoch, fold=fold,
        )
    except InputError as error:
        raise ModelError(f"cannot train branch {branch}: {error}") from None
    return balanced, {"kind": "size_balanced", "weights": dict(balanced.weights),
                      "group_counts": counts, "num_samples": len(balanced)}


def calibrate_logits(model: DSANet, cases: Sequence[ClassifierCase], config: TrainConfig, *,
                     device: torch.device) -> tuple[float, float]:
    """Set `model`'s logit calibration from its own training scans; returns (shift, scale).

    Fold models trained on a few dozen scans each end at different offsets and scales
    (a scan without infection may score -0.7 in one fold and +0.2 in the next), so
    their out-of-fold predictions, pooled, rank worse than each fold's alone, and an
    average over fold models is dominated by the widest. Calibration maps each
    model's logits to a common frame using its training scans only (never validation
    or test labels): 0 is the midpoint between the mean logits of its COVID and CAP
    training scans (the mean of all when one class is missing), and 1 unit is the
    standard deviation of its training logits (1 when they are all equal). AUC within
    one model does not change.
    """
    model.logit_shift.fill_(0.0)
    model.logit_scale.fill_(1.0)
    logits = predict_logits(model, cases, device=device, batch_size=config.val_batch_size,
                            num_workers=config.num_workers,
                            mixed_precision=config.mixed_precision,
                            channels_last=config.channels_last_3d)
    labels = np.array([case.label for case in cases])
    if np.unique(labels).size == 2:
        shift = float((logits[labels == 1].mean() + logits[labels == 0].mean()) / 2)
    else:
        shift = float(logits.mean())
    spread = float(logits.std())
    scale = spread if spread > 1e-6 else 1.0
    model.logit_shift.fill_(shift)
    model.logit_scale.fill_(scale)
    return float(model.logit_shift), float(model.logit_scale)


def _resume_identity(config: TrainConfig) -> str:
    # More epochs continue a run; every other model-changing setting must match.
    return config.model_copy(update={"epochs": 1}).training_fingerprint()


def _check_resume(resume: dict[str, Any], branch: str, seed: int, config: TrainConfig,
                  split: SelectionSplit) -> None:
    check_format(resume)
    try:
        saved_config = TrainConfig.model_validate(resume.get("config"))
    except ValidationError:
        raise ModelError("cannot resume: the checkpoint's config is not a TrainConfig") from None
    found = dict(resume) | {"config": _resume_identity(saved_config)}
    expected = {"branch": branch, "seed": seed, "config": _resume_identity(config),
                "fit_scan_ids": [c.scan_id for c in split.fit],
                "select_scan_ids": [c.scan_id for c in split.select]}
    for key, value in expected.items():
        if found.get(key) != value:
            shown = f"{len(value)} scans" if isinstance(value, list) else value
            raise ModelError(f"cannot resume: the checkpoint's {key} does not match this run "
                             f"(expected {shown})")
    if int(resume["epoch"]) > config.epochs:
        raise ModelError(f"cannot resume: the checkpoint has {resume['epoch']} epochs, more "
                         f"than the {config.epochs} configured")


def train_classifier(
    train: Sequence[ClassifierCase],
    config: TrainConfig,
    *,
    branch: str,
    seed: int,
    device: torch.device,
    resume: dict[str, Any] | None,
    on_epoch_end: Callable[[dict[str, Any], ClassifierEpochReport], None],
    log: Callable[[str], None] = print,
    fold: int | str | None = None,
) -> ClassifierTrainResult:
    """Train one branch on a fold's training scans (the fold's validation scans are not
    an argument: see the module docstring) and keep the epoch `config.epoch_selection`
    chooses on them.

    `on_epoch_end(checkpoint, report)` gets a plain dict (see `checkpoints`) after
    every epoch; passing it back as `resume` continues after that epoch. `fold` labels
    messages and the checkpoint only.
    """
    _check_branch(branch)
    device = torch.device(device)
    attention = uses_attention(branch)
    if not train:
        raise ModelError(f"fold {fold}: branch {branch} needs at least one training scan, "
                         "found none")
    check_cases(train)
    try:
        split = selection_split(train, config, seed)
    except ModelError as error:
        raise ModelError(f"fold {fold}: branch {branch}: {error}") from None
    sampler, sampler_info = _make_sampler(split.fit, branch, seed, config, fold)

    torch.manual_seed(_derived_seed(seed, _INIT_STREAM))
    model = build_classifier(config).to(device)
    if config.channels_last_3d:
        model = model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                                 betas=(config.adam_beta1, 0.999),
                                 weight_decay=config.weight_decay)
    start_epoch, best_epoch = 0, 0
    best_auc, best_loss = math.nan, math.nan
    best_state = model_state(model)
    history: list[ClassifierEpochReport] = []
    if resume is not None:
        _check_resume(resume, branch, seed, config, split)
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        start_epoch, best_epoch = int(resume["epoch"]), int(resume["best_epoch"])
        best_auc = float(resume["best_select_auc"])
        best_loss = float(resume["best_select_loss"])
        best_state = resume["best_model"]
        history = [ClassifierEpochReport(**item) for item in resume["history"]]
        log(f"fold {fold} {branch}: resuming after epoch {start_epoch}")

    loader = make_loader(split.fit, batch_size=config.batch_size, sampler=sampler,
                         with_infection=attention, num_workers=config.num_workers,
                         device=device)
    select_loader = None
    if split.select:
        select_loader = make_loader(split.select, batch_size=config.val_batch_size,
                                    sampler=None, with_infection=False,
                                    num_workers=config.num_workers, device=device)
    # The fitted scans once each, in order, for BatchNorm's statistics.
    stats_loader = make_loader(split.fit, batch_size=config.batch_size, sampler=None,
                               with_infection=False, num_workers=config.num_workers,
                               device=device)
    select_labels = np.array([case.label for case in split.select], dtype=np.float64)
    checkpoint: dict[str, Any] = dict(resume) if resume is not None else {}
    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        torch.manual_seed(_derived_seed(seed, _EPOCH_STREAM, epoch))
        lr = epoch_learning_rate(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, loss_c, loss_ex = _train_epoch(model, optimizer, loader, config,
                                             attention=attention, device=device)
        # Precise BN changes only eval-mode outputs (training normalises by batch), so
        # without an inner split it is needed after the last epoch alone.
        if config.precise_batch_norm and (select_loader is not None
                                          or epoch == config.epochs - 1):
            recalibrate_batch_norm(model, stats_loader, device=device,
                                   mixed_precision=config.mixed_precision,
                                   channels_last=config.channels_last_3d)
        if not math.isfinite(loss):
            raise ModelError(f"fold {fold}: branch {branch} diverged: training loss {loss} "
                             f"in epoch {epoch + 1}")
        logits = np.zeros(0)
        if select_loader is not None:
            logits = logits_from_loader(model, select_loader, device=device,
                                        mixed_precision=config.mixed_precision,
                                        channels_last=config.channels_last_3d)
        select_auc, select_loss = selection_scores(logits, select_labels)
        is_best = (best_epoch == 0 or select_loader is None
                   or selection_key(select_auc, select_loss)
                   > selection_key(best_auc, best_loss))
        if is_best:
            best_epoch, best_auc, best_loss = epoch + 1, select_auc, select_loss
            best_state = model_state(model)
        report = ClassifierEpochReport(epoch + 1, lr, loss, loss_c, loss_ex, select_auc,
                                       select_loss, time.perf_counter() - started, best_epoch,
                                       best_auc, is_best)
        history.append(report)
        inner = (f" inner auc {select_auc:.4f} loss {select_loss:.4f} (best epoch "
                 f"{best_epoch})" if select_loader is not None else "")
        log(f"fold {fold} {branch} epoch {epoch + 1}/{config.epochs}: loss {loss:.4f} "
            f"(bce {loss_c:.4f}, attention {loss_ex:.4f}){inner}")
        checkpoint = {
            "format": CHECKPOINT_FORMAT,
            "branch": branch,
            "fold": None if fold is None else str(fold),
            "seed": seed,
            "epoch": epoch + 1,
            "model": model_state(model),
            "optimizer": cpu_copy(optimizer.state_dict()),
            "best_epoch": best_epoch,
            "best_select_auc": best_auc,
            "best_select_loss": best_loss,
            "best_model": best_state,
            "history": [asdict(item) for item in history],
            "config": config.model_dump(mode="json"),
            "training_fingerprint": config.training_fingerprint(),
            "sampler": sampler_info,
            "train_scan_ids": [c.scan_id for c in train],
            "fit_scan_ids": [c.scan_id for c in split.fit],
            "select_scan_ids": [c.scan_id for c in split.select],
        }
        on_epoch_end(checkpoint, report)
    model.load_state_dict(best_state)
    if config.calibrate_logits:
        shift, scale = calibrate_logits(model, train, config, device=device)
        checkpoint = {**checkpoint, "best_model": model_state(model),
                      "calibration": {"logit_shift": shift, "logit_scale": scale}}
        log(f"fold {fold} {branch}: logits calibrated on the training scans (shift "
            f"{shift:.4f}, scale {scale:.4f})")
    model.eval()
    return ClassifierTrainResult(model, branch, best_epoch, best_auc, best_loss, history,
                                 checkpoint, dict(sampler_info["weights"]), len(split.fit),
                                 len(split.select))
