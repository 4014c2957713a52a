"""The epoch loop both trainers share: resume, seeding, learning rate, best epoch, checkpoints.

A trainer (`classifier.training.train_classifier`, `segmentation.training.train_vbnet`)
calls `seed_initialisation(seed)`, builds its network and optimiser, and hands
`run_epochs` an `EpochPlan`: how to train and score one epoch (its batches, loss and
validation), how to rank two epochs, and its own checkpoint keys. The loop does the
rest, by one rule for both:

- Seeding: at the start of 0-based epoch e, torch's global generator (CPU and CUDA) is
  re-seeded from (seed, e) and the plan gets a numpy generator made from (seed, e) as
  well. The random state an epoch starts from is thus a function of (seed, e) alone, so
  a run resumed after epoch k continues exactly as an uninterrupted one (bit-identical
  on CPU; CUDA kernels may add non-determinism), and no RNG state needs saving.
- The learning rate of epoch e is `learning_rate(e)`, a pure function of the epoch (a
  schedule with no state to save), set on every parameter group before the epoch.
- The best epoch: the first, then every epoch whose rank is strictly higher than the
  best one's (a tie keeps the earlier); a rank of None keeps every newer epoch. Its
  weights are kept as CPU tensors.
- After every epoch, `on_epoch_end(checkpoint, report)` gets a plain dict that
  `torch.load(weights_only=True)` reads back; passing it as `resume` continues after
  that epoch:

      format            the trainer's checkpoint format
      epoch             epochs finished (1-based)
      model, optimizer  this epoch's weights and optimiser state (CPU tensors)
      best_epoch        the kept epoch (1-based); best_model its weights
      history           one dict per epoch (the trainer's report dataclass)
      ...               the trainer's own keys (`EpochPlan.checkpoint_fields`)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np
import torch

from dsan_core.errors import ModelError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

#: A trainer's per-epoch report: a dataclass, kept in the checkpoint's history.
R = TypeVar("R", bound="DataclassInstance")
#: Tags that keep the seed streams of initialisation, torch per epoch and numpy per
#: epoch apart.
_INIT_STREAM, _EPOCH_STREAM, _NUMPY_STREAM = 0x1A17, 0xE90C, 0xDA7A


def derived_seed(seed: int, stream: int, epoch: int = 0) -> int:
    """A 62-bit seed for one stream and epoch of a run, stable across processes."""
    state = np.random.SeedSequence([int(seed), stream, int(epoch)]).generate_state(2)
    return (int(state[0]) << 31) ^ int(state[1])


def seed_initialisation(seed: int) -> None:
    """Seed torch's global generator for building a run's network (its initial weights)."""
    torch.manual_seed(derived_seed(seed, _INIT_STREAM))


def seed_epoch(seed: int, epoch: int) -> np.random.Generator:
    """Re-seed torch's global generator for 0-based `epoch` and return the epoch's numpy
    generator; both depend on (seed, epoch) alone."""
    torch.manual_seed(derived_seed(seed, _EPOCH_STREAM, epoch))
    return np.random.default_rng(np.random.SeedSequence([int(seed), _NUMPY_STREAM, int(epoch)]))


def cpu_copy(value: Any) -> Any:
    """A detached CPU copy of nested dicts / lists / tuples of tensors (others as is)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: cpu_copy(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(cpu_copy(item) for item in value)
    return value


def model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights and buffers as CPU tensors in the default (contiguous) layout."""
    return {
        key: value.detach().to("cpu").contiguous().clone()
        for key, value in model.state_dict().items()
    }


def check_format(checkpoint: Any, expected: str) -> None:
    """`checkpoint` is a dict of format `expected`."""
    found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint)
    if found != expected:
        raise ModelError(f"expected a {expected} checkpoint, found {found!r}")


class EpochPlan(Protocol[R]):
    """What one trainer does in an epoch; the loop does the rest (module docstring)."""

    def train_epoch(self, epoch: int, lr: float, rng: np.random.Generator) -> R:
        """Train 0-based `epoch` (seeded, its learning rate `lr` set) and score it: its
        report, the best-epoch fields not yet filled in."""
        ...

    def rank(self, report: R) -> tuple[float, ...] | None:
        """How good the epoch is, higher better; None: keep the newest epoch."""
        ...

    def mark_best(self, report: R, best: R, is_best: bool) -> R:
        """`report` with its best-epoch fields filled in from `best` (itself when is_best)."""
        ...

    def checkpoint_fields(self, best: R) -> dict[str, Any]:
        """The trainer's own checkpoint keys after an epoch (config, best scores, ...)."""
        ...


@dataclass
class EpochsDone(Generic[R]):
    """A finished loop: every epoch's report (resumed ones included), the kept epoch
    (1-based), its report and weights, and the last checkpoint."""

    history: list[R]
    best_epoch: int
    best: R
    best_state: dict[str, torch.Tensor]
    checkpoint: dict[str, Any]


def run_epochs(
    plan: EpochPlan[R],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    seed: int,
    epochs: int,
    learning_rate: Callable[[int], float],
    checkpoint_format: str,
    report_type: Callable[..., R],
    resume: dict[str, Any] | None,
    on_epoch_end: Callable[[dict[str, Any], R], None],
) -> EpochsDone[R]:
    """Train epochs 1..`epochs` (after `resume`'s, when given) and return the kept one;
    `model` is left with the last epoch's weights."""
    best_epoch, best_state, history = 0, model_state(model), []
    checkpoint: dict[str, Any] = {}
    if resume is not None:
        check_format(resume, checkpoint_format)
        if int(resume["epoch"]) > epochs:
            raise ModelError(f"cannot resume: the checkpoint has {resume['epoch']} epochs, "
                             f"more than the {epochs} configured")
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        history = [report_type(**item) for item in resume["history"]]
        best_epoch, best_state = int(resume["best_epoch"]), resume["best_model"]
        checkpoint = dict(resume)
        if len(history) != int(resume["epoch"]) or not 1 <= best_epoch <= len(history):
            raise ModelError(f"cannot resume: the checkpoint's history has {len(history)} "
                             f"epochs, expected {resume['epoch']} with the best among them")
    best = history[best_epoch - 1] if best_epoch else None
    for epoch in range(len(history), epochs):
        rng = seed_epoch(seed, epoch)
        lr = learning_rate(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        report = plan.train_epoch(epoch, lr, rng)
        rank = plan.rank(report)
        if best is None or rank is None or rank > (plan.rank(best) or ()):
            best_epoch, best_state = epoch + 1, model_state(model)
            report = best = plan.mark_best(report, report, True)
        else:
            report = plan.mark_best(report, best, False)
        history.append(report)
        checkpoint = {
            "format": checkpoint_format,
            "epoch": epoch + 1,
            "model": model_state(model),
            "optimizer": cpu_copy(optimizer.state_dict()),
            "best_epoch": best_epoch,
            "best_model": best_state,
            "history": [dataclasses.asdict(item) for item in history],
            **plan.checkpoint_fields(best),
        }
        on_epoch_end(checkpoint, report)
    if best is None:  # only with epochs < 1, which the configs refuse
        raise ModelError(f"expected at least one epoch to train, found {epochs}")
    return EpochsDone(history, best_epoch, best, best_state, checkpoint)

