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

Reproducibility: the shared epoch loop (`dsan_core.training_loop`) seeds the network's
initialisation from the seed and re-seeds torch from (seed, e) at the start of every
epoch e, and the sampler draws epoch e's order from (seed, e), so a run resumed from an
end-of-epoch checkpoint equals an uninterrupted one (bit-identical on CPU; CUDA kernels
may add non-determinism).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch.utils.data import DataLoader

from dsan_core.branches import ATT_SS, RN34_US, TRAINED
from dsan_core.classifier.attention import attention_loss, soft_attention
from dsan_core.classifier.augment import mirror_left_right, shift_lung_intensity
from dsan_core.classifier.calibration import calibrate_logits, recalibrate_batch_norm
from dsan_core.classifier.checkpoints import CHECKPOINT_FORMAT, build_classifier, check_format
from dsan_core.classifier.data import ClassifierCase, check_cases, make_loader
from dsan_core.classifier.inference import autocast_for, logits_from_loader, to_network_input
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
from dsan_core.training_loop import model_state, run_epochs, seed_initialisation


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


class _BranchEpochs:
    """One branch's epochs for `run_epochs`: batches from its sampler, its loss, precise
    BN, and the epoch's scores on the inner validation split."""

    def __init__(self, model: DSANet, optimizer: torch.optim.Optimizer,
                 train: Sequence[ClassifierCase], split: SelectionSplit, config: TrainConfig,
                 sampler: UniformSampler | SizeBalancedSampler, sampler_info: dict[str, Any],
                 *, branch: str, seed: int, device: torch.device,
                 fold: int | str | None) -> None:
        self.model, self.optimizer, self.config = model, optimizer, config
        self.sampler, self.branch, self.fold, self.device = sampler, branch, fold, device
        self.attention = uses_attention(branch)
        workers = config.num_workers
        self.loader = make_loader(split.fit, batch_size=config.batch_size, sampler=sampler,
                                  with_infection=self.attention, num_workers=workers,
                                  device=device)
        self.select_loader = None
        if split.select:
            self.select_loader = make_loader(split.select, batch_size=config.val_batch_size,
                                             sampler=None, with_infection=False,
                                             num_workers=workers, device=device)
        # The fitted scans once each, in order, for BatchNorm's statistics.
        self.stats_loader = make_loader(split.fit, batch_size=config.batch_size, sampler=None,
                                        with_infection=False, num_workers=workers,
                                        device=device)
        self.select_labels = np.array([case.label for case in split.select], dtype=np.float64)
        self.fixed_fields = {
            "branch": branch, "fold": None if fold is None else str(fold), "seed": seed,
            "config": config.model_dump(mode="json"),
            "training_fingerprint": config.training_fingerprint(), "sampler": sampler_info,
            "train_scan_ids": [c.scan_id for c in train],
            "fit_scan_ids": [c.scan_id for c in split.fit],
            "select_scan_ids": [c.scan_id for c in split.select],
        }

    def train_epoch(self, epoch: int, lr: float, rng: np.random.Generator
                    ) -> ClassifierEpochReport:
        started = time.perf_counter()
        config, device = self.config, self.device
        self.sampler.set_epoch(epoch)  # the sampler draws from (seed, epoch) itself
        loss, loss_c, loss_ex = _train_epoch(self.model, self.optimizer, self.loader, config,
                                             attention=self.attention, device=device)
        # Precise BN changes only eval-mode outputs (training normalises by batch), so
        # without an inner split it is needed after the last epoch alone.
        if config.precise_batch_norm and (self.select_loader is not None
                                          or epoch == config.epochs - 1):
            recalibrate_batch_norm(self.model, self.stats_loader, device=device,
                                   mixed_precision=config.mixed_precision,
                                   channels_last=config.channels_last_3d)
        if not math.isfinite(loss):
            raise ModelError(f"fold {self.fold}: branch {self.branch} diverged: training loss "
                             f"{loss} in epoch {epoch + 1}")
        logits = np.zeros(0)
        if self.select_loader is not None:
            logits = logits_from_loader(self.model, self.select_loader, device=device,
                                        mixed_precision=config.mixed_precision,
                                        channels_last=config.channels_last_3d)
        select_auc, select_loss = selection_scores(logits, self.select_labels)
        return ClassifierEpochReport(epoch + 1, lr, loss, loss_c, loss_ex, select_auc,
                                     select_loss, time.perf_counter() - started, 0, math.nan,
                                     False)

    def rank(self, report: ClassifierEpochReport) -> tuple[float, ...] | None:
        # Without an inner split ("last") every newer epoch is kept.
        if self.select_loader is None:
            return None
        return selection_key(report.select_auc, report.select_loss)

    def mark_best(self, report: ClassifierEpochReport, best: ClassifierEpochReport,
                  is_best: bool) -> ClassifierEpochReport:
        return replace(report, best_epoch=best.epoch, best_select_auc=best.select_auc,
                       is_best=is_best)

    def checkpoint_fields(self, best: ClassifierEpochReport) -> dict[str, Any]:
        return {**self.fixed_fields, "best_select_auc": best.select_auc,
                "best_select_loss": best.select_loss}


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
    if not train:
        raise ModelError(f"fold {fold}: branch {branch} needs at least one training scan, "
                         "found none")
    check_cases(train)
    try:
        split = selection_split(train, config, seed)
    except ModelError as error:
        raise ModelError(f"fold {fold}: branch {branch}: {error}") from None
    sampler, sampler_info = _make_sampler(split.fit, branch, seed, config, fold)

    seed_initialisation(seed)
    model = build_classifier(config).to(device)
    if config.channels_last_3d:
        model = model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                                 betas=(config.adam_beta1, 0.999),
                                 weight_decay=config.weight_decay)
    if resume is not None:
        _check_resume(resume, branch, seed, config, split)
        log(f"fold {fold} {branch}: resuming after epoch {resume['epoch']}")
    plan = _BranchEpochs(model, optimizer, train, split, config, sampler, sampler_info,
                         branch=branch, seed=seed, device=device, fold=fold)

    def end_of_epoch(checkpoint: dict[str, Any], report: ClassifierEpochReport) -> None:
        inner = (f" inner auc {report.select_auc:.4f} loss {report.select_loss:.4f} (best "
                 f"epoch {report.best_epoch})" if split.select else "")
        log(f"fold {fold} {branch} epoch {report.epoch}/{config.epochs}: loss "
            f"{report.loss:.4f} (bce {report.loss_c:.4f}, attention {report.loss_ex:.4f})"
            f"{inner}")
        on_epoch_end(checkpoint, report)

    done = run_epochs(plan, model, optimizer, seed=seed, epochs=config.epochs,
                      learning_rate=lambda epoch: epoch_learning_rate(config, epoch),
                      checkpoint_format=CHECKPOINT_FORMAT, report_type=ClassifierEpochReport,
                      resume=resume, on_epoch_end=end_of_epoch)
    model.load_state_dict(done.best_state)
    checkpoint = done.checkpoint
    if config.calibrate_logits:
        shift, scale = calibrate_logits(model, train, config, device=device)
        checkpoint = {**checkpoint, "best_model": model_state(model),
                      "calibration": {"logit_shift": shift, "logit_scale": scale}}
        log(f"fold {fold} {branch}: logits calibrated on the training scans (shift "
            f"{shift:.4f}, scale {scale:.4f})")
    model.eval()
    return ClassifierTrainResult(model, branch, done.best_epoch, done.best.select_auc,
                                 done.best.select_loss, done.history, checkpoint,
                                 dict(sampler_info["weights"]), len(split.fit),
                                 len(split.select))
