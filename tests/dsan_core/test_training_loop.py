from __future__ import annotations

import dataclasses
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from dsan_core.errors import ModelError
from dsan_core.training_loop import EpochsDone, run_epochs, seed_epoch, seed_initialisation

FORMAT = "toy-checkpoint-v1"


@dataclass(frozen=True)
class ToyReport:
    epoch: int
    lr: float
    loss: float
    score: float
    torch_draw: float
    numpy_draw: float
    best_epoch: int = 0
    best_score: float = math.nan
    is_best: bool = False


class ToyPlan:
    """A linear model fitted to noisy targets; the noise comes from both of the epoch's
    generators, the score from a script (None: rank every newer epoch higher)."""

    def __init__(self, model: torch.nn.Linear, optimizer: torch.optim.Optimizer,
                 scores: list[float] | None) -> None:
        self.model, self.optimizer, self.scores = model, optimizer, scores

    def train_epoch(self, epoch: int, lr: float, rng: np.random.Generator) -> ToyReport:
        assert all(group["lr"] == lr for group in self.optimizer.param_groups)
        torch_draw = float(torch.rand(1))
        numpy_draw = float(rng.random())
        x = torch.randn(8, 2)
        y = x.sum(dim=1, keepdim=True) + torch.from_numpy(rng.normal(size=(8, 1))).float()
        self.optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        score = self.scores[epoch] if self.scores is not None else -float(loss.detach())
        return ToyReport(epoch + 1, lr, float(loss.detach()), score, torch_draw, numpy_draw)

    def rank(self, report: ToyReport) -> tuple[float, ...] | None:
        return None if self.scores is None else (report.score,)

    def mark_best(self, report: ToyReport, best: ToyReport, is_best: bool) -> ToyReport:
        return dataclasses.replace(report, best_epoch=best.epoch, best_score=best.score,
                                   is_best=is_best)

    def checkpoint_fields(self, best: ToyReport) -> dict[str, Any]:
        return {"best_score": best.score}


class Killed(Exception):
    pass


def _round_trip(checkpoint: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    loaded: dict[str, Any] = torch.load(buffer, weights_only=True)
    return loaded


def _run(*, epochs: int = 4, seed: int = 5, scores: list[float] | None = None,
         resume: dict[str, Any] | None = None, kill_after: int | None = None,
         saved: list[dict[str, Any]] | None = None,
         ) -> tuple[EpochsDone[ToyReport], list[dict[str, Any]], torch.nn.Linear]:
    seed_initialisation(seed)
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0)
    saved = [] if saved is None else saved

    def keep(checkpoint: dict[str, Any], report: ToyReport) -> None:
        saved.append(_round_trip(checkpoint))
        if report.epoch == kill_after:
            raise Killed

    done = run_epochs(ToyPlan(model, optimizer, scores), model, optimizer, seed=seed,
                      epochs=epochs, learning_rate=lambda epoch: 0.1 / (epoch + 1),
                      checkpoint_format=FORMAT, report_type=ToyReport, resume=resume,
                      on_epoch_end=keep)
    return done, saved, model


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_best_epoch_is_the_first_highest_rank_and_ties_keep_the_earlier() -> None:
    done, saved, model = _run(scores=[0.5, 0.7, 0.7, 0.6])
    assert done.best_epoch == 2 and done.best.epoch == 2
    assert [(r.best_epoch, r.best_score, r.is_best) for r in done.history] == [
        (1, 0.5, True), (2, 0.7, True), (2, 0.7, False), (2, 0.7, False)]
    assert _same(done.best_state, saved[1]["model"])
    assert _same(saved[-1]["best_model"], saved[1]["model"])
    assert saved[-1]["best_epoch"] == 2 and saved[-1]["best_score"] == 0.7
    # The model keeps the last epoch's weights; the caller loads the best.
    assert _same(model.state_dict(), saved[-1]["model"])


def test_without_a_rank_the_newest_epoch_is_kept() -> None:
    done, saved, _ = _run(scores=None, epochs=3)
    assert done.best_epoch == 3 and all(r.is_best for r in done.history)
    assert _same(done.best_state, saved[-1]["model"])


def test_checkpoint_keys_and_learning_rate_schedule() -> None:
    done, saved, _ = _run(scores=[0.1, 0.2, 0.3, 0.4])
    assert [r.lr for r in done.history] == pytest.approx([0.1, 0.05, 0.1 / 3, 0.025])
    checkpoint = saved[-1]
    assert set(checkpoint) == {"format", "epoch", "model", "optimizer", "best_epoch",
                               "best_model", "history", "best_score"}
    assert (checkpoint["format"], checkpoint["epoch"]) == (FORMAT, 4)
    assert checkpoint["history"] == [dataclasses.asdict(r) for r in done.history]
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.025)


def test_each_epoch_is_seeded_from_the_seed_and_the_epoch_alone() -> None:
    first, _, _ = _run()
    torch.manual_seed(999)
    np.random.seed(999)
    again, _, _ = _run()
    draws = [(r.torch_draw, r.numpy_draw) for r in first.history]
    assert draws == [(r.torch_draw, r.numpy_draw) for r in again.history]
    assert len(set(draws)) == len(draws)  # epochs differ
    other, _, _ = _run(seed=6)
    assert all(a != b for a, b in zip(draws, [(r.torch_draw, r.numpy_draw)
                                              for r in other.history], strict=True))
    rng = seed_epoch(5, 2)
    assert (float(torch.rand(1)), float(rng.random())) == draws[2]


@pytest.mark.parametrize("kill_after", [1, 2, 3])
def test_a_resumed_run_equals_an_uninterrupted_one(kill_after: int) -> None:
    scores = [0.3, 0.9, 0.1, 0.5]
    full, saved, model = _run(scores=scores)
    killed: list[dict[str, Any]] = []
    with pytest.raises(Killed):
        _run(scores=scores, kill_after=kill_after, saved=killed)
    # Whatever the process drew in between, the resumed epochs start from the same state.
    torch.manual_seed(12345)
    np.random.seed(12345)
    resumed, again, resumed_model = _run(scores=scores, resume=killed[-1])
    assert len(again) == 4 - kill_after
    assert _same(model.state_dict(), resumed_model.state_dict())
    assert _same(saved[-1]["optimizer"]["state"][0], again[-1]["optimizer"]["state"][0])
    assert _same(full.best_state, resumed.best_state) and resumed.best_epoch == 2
    assert saved[-1]["history"] == again[-1]["history"]
    assert resumed.history == full.history


def test_a_finished_run_resumed_trains_nothing() -> None:
    full, saved, _ = _run(scores=[0.3, 0.9], epochs=2)
    again, more, model = _run(scores=[0.3, 0.9], epochs=2, resume=saved[-1])
    assert more == [] and again.history == full.history and again.best_epoch == 2
    assert again.checkpoint == saved[-1] and _same(model.state_dict(), saved[-1]["model"])


def test_resume_refuses_foreign_longer_or_inconsistent_checkpoints() -> None:
    _, saved, _ = _run(scores=[0.1, 0.2], epochs=2)
    with pytest.raises(ModelError, match="expected a toy-checkpoint-v1 checkpoint, found 'x'"):
        _run(epochs=2, resume=saved[-1] | {"format": "x"})
    with pytest.raises(ModelError, match="has 2 epochs, more than the 1 configured"):
        _run(scores=[0.1], epochs=1, resume=saved[-1])
    with pytest.raises(ModelError, match="history"):
        _run(scores=[0.1, 0.2, 0.3], epochs=3, resume=saved[-1] | {"best_epoch": 0})
