from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch

from dsan_core.config import VBNetConfig
from dsan_core.errors import InputError, ModelError
from dsan_core.segmentation.patches import (
    CaseCache,
    PreparedCase,
    SegCase,
    SegVolume,
    prepare_case,
    sample_patch,
)
from dsan_core.segmentation.training import (
    EpochReport,
    load_vbnet,
    segmentation_loss,
    train_vbnet,
)

torch.set_num_threads(1)
CPU = torch.device("cpu")
CONFIG = VBNetConfig(base_width=4, depth=3, spacing_mm=(6.0, 6.0, 6.0), patch_size=(16, 32, 32),
                     batch_size=2, epochs=2, steps_per_epoch=2, mixed_precision=False, seed=3)


def tiny_volume(seed: int) -> SegVolume:
    """Lungs at -850 HU in a +40 HU body, a -500 HU infection cube; 6 mm voxels."""
    rng = np.random.default_rng(seed)
    hu = np.full((12, 36, 40), -1000.0, np.float32)
    hu[:, 4:32, 3:37] = 40
    lung = np.zeros(hu.shape, np.uint8)
    lung[2:10, 8:28, 6:18] = 1
    lung[2:10, 8:28, 22:34] = 1
    infection = np.zeros_like(lung)
    infection[4:7, 12:16, 8 + seed:12 + seed] = 1
    hu[lung == 1] = -850
    hu[infection == 1] = -500
    hu += rng.normal(0, 10, hu.shape).astype(np.float32)
    return SegVolume(hu, lung, infection, (6.0, 6.0, 6.0))


CASES = [SegCase(f"c{i}", lambda i=i: tiny_volume(i)) for i in range(2)]


def test_prepare_case_resamples_to_network_spacing() -> None:
    volume = tiny_volume(0)
    coarse = VBNetConfig(spacing_mm=(12.0, 12.0, 12.0))
    prepared = prepare_case(volume, coarse)
    assert prepared.image.shape == prepared.labels.shape == (6, 18, 20)
    assert prepared.image.dtype == np.float32 and 0 <= prepared.image.min() <= 1
    assert set(np.unique(prepared.labels)) == {0, 1, 2}


def test_prepare_case_refuses_mismatched_masks() -> None:
    volume = tiny_volume(0)
    bad = SegVolume(volume.hu, volume.lung[:-1], volume.infection, volume.spacing)
    with pytest.raises(InputError, match="scan c9: expected hu, lung and infection"):
        prepare_case(bad, CONFIG, case_id="c9")


def test_patch_sampler_pads_small_cases_and_centres_on_infection() -> None:
    labels = np.zeros((4, 6, 8), np.uint8)
    labels[1, 2, 3] = 2
    case = PreparedCase("c", np.ones((4, 6, 8), np.float32), labels)
    for seed in range(5):
        image, patch_labels = sample_patch(case, (8, 8, 16), 1.0, np.random.default_rng(seed))
        assert image.shape == patch_labels.shape == (8, 8, 16)
        assert (patch_labels == 2).sum() == 1
        assert image[4:].max() == 0  # the padding is air (0)


def test_patch_sampler_infection_fraction_zero_is_still_random() -> None:
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[0, 0, 0] = 2
    case = PreparedCase("c", np.zeros((20, 20, 20), np.float32), labels)
    hits = sum(
        (sample_patch(case, (4, 4, 4), 0.0, np.random.default_rng(s))[1] == 2).any()
        for s in range(20)
    )
    assert hits < 10


def test_loss_is_lower_for_the_right_answer() -> None:
    labels = torch.tensor([0, 1, 2, 1]).reshape(1, 1, 2, 2)
    right = torch.nn.functional.one_hot(labels, 3).permute(0, 4, 1, 2, 3).float() * 10
    wrong = right.roll(1, dims=1)
    assert segmentation_loss(right, labels) < 0.01
    assert segmentation_loss(wrong, labels) > 1.0


class Killed(Exception):
    """Stands in for a task killed right after a checkpoint was written."""


def _run(resume: dict[str, Any] | None, epochs: int, *, kill_after: int | None = None,
         saved: list[dict[str, Any]] | None = None) -> tuple[Any, list[dict[str, Any]]]:
    saved = [] if saved is None else saved

    def keep(checkpoint: dict[str, Any], report: EpochReport) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        buffer.seek(0)
        saved.append(torch.load(buffer, weights_only=True))
        if report.epoch == kill_after:
            raise Killed

    config = CONFIG.model_copy(update={"epochs": epochs})
    result = train_vbnet(CASES, CASES[:1], config, device=CPU, resume=resume,
                         on_epoch_end=keep, log=lambda _: None)
    return result, saved


@pytest.fixture(scope="module")
def trained() -> tuple[Any, list[dict[str, Any]]]:
    """The tiny VB-Net trained for 2 epochs (its result and each epoch's checkpoint),
    once for the tests that only read it."""
    return _run(None, 2)


@pytest.mark.slow
def test_tiny_training_checkpoints_load_weights_only_and_resume_identically(
        trained: tuple[Any, list[dict[str, Any]]]) -> None:
    result, saved = trained
    assert [r.epoch for r in result.history] == [1, 2]
    assert len(saved) == 2 and saved[1]["epoch"] == 2
    assert saved[1]["optimizer"]["param_groups"][0]["weight_decay"] == CONFIG.weight_decay
    assert 0 <= result.history[-1].val_lung_dice <= 1
    assert result.best_epoch in (1, 2)
    assert np.isfinite(result.history[-1].train_loss)

    resumed, saved_again = _run(saved[0], 2)
    assert len(saved_again) == 1
    for key, value in saved[1]["model"].items():
        assert torch.equal(value, saved_again[0]["model"][key]), key
    assert [r.epoch for r in resumed.history] == [1, 2]
    assert resumed.history[1].train_loss == result.history[1].train_loss

    model = load_vbnet(saved[1], CONFIG, CPU)
    assert not model.training
    best = saved[1]["best_model"]
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())


@pytest.mark.slow
@pytest.mark.parametrize("kill_after", [1, 2])
def test_a_killed_run_resumes_with_the_random_state_of_an_uninterrupted_one(
        kill_after: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from dsan_core.segmentation import training

    starts: list[tuple[int, torch.Tensor, dict[str, Any]]] = []
    train_epoch = training._VBNetEpochs.train_epoch

    def spy(self: Any, epoch: int, lr: float, rng: np.random.Generator) -> EpochReport:
        starts.append((epoch, torch.get_rng_state(), rng.bit_generator.state))
        return train_epoch(self, epoch, lr, rng)

    monkeypatch.setattr(training._VBNetEpochs, "train_epoch", spy)
    full, saved = _run(None, 3)
    uninterrupted = starts[kill_after:]
    killed: list[dict[str, Any]] = []
    with pytest.raises(Killed):
        _run(None, 3, kill_after=kill_after, saved=killed)
    starts.clear()
    torch.manual_seed(999)  # whatever the process drew in between
    np.random.seed(999)
    resumed, again = _run(killed[-1], 3)
    assert [s[0] for s in starts] == list(range(kill_after, 3))
    for (_, torch_state, numpy_state), (_, torch_again, numpy_again) in zip(
            uninterrupted, starts, strict=True):
        assert torch.equal(torch_state, torch_again) and numpy_state == numpy_again
    last, last_again = saved[-1], again[-1]
    for key in ("model", "best_model"):
        assert all(torch.equal(v, last_again[key][k]) for k, v in last[key].items()), key
    for index, state in last["optimizer"]["state"].items():
        assert all(torch.equal(v, last_again["optimizer"]["state"][index][k])
                   for k, v in state.items())

    def strip(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in item.items() if k != "seconds"} for item in history]

    assert strip(last["history"]) == strip(last_again["history"])
    assert (resumed.best_epoch, resumed.infection_threshold) == (full.best_epoch,
                                                                 full.infection_threshold)


def test_vbnet_weight_decay_changes_the_model_and_the_cache_size_does_not() -> None:
    base = VBNetConfig()
    assert (base.weight_decay, base.cache_capacity) == (1e-5, 256)
    assert base.model_copy(update={"weight_decay": 1e-4}).training_fingerprint() \
        != base.training_fingerprint()
    cache = base.model_copy(update={"cache_capacity": 8})
    assert cache.training_fingerprint() == base.training_fingerprint()
    assert cache.fingerprint() != base.fingerprint()


def test_training_without_cases_or_with_a_foreign_checkpoint_fails() -> None:
    with pytest.raises(ModelError, match="at least one training case"):
        train_vbnet([], [], CONFIG, device=CPU, resume=None, on_epoch_end=lambda c, r: None)
    with pytest.raises(ModelError, match="checkpoint"):
        train_vbnet(CASES, [], CONFIG, device=CPU, resume={"format": "other"},
                    on_epoch_end=lambda c, r: None)


class ProbabilityOracle(torch.nn.Module):
    """Background where the image is 0, else lung, with infection probability 0.3 on
    infection voxels (intensity 1.0) and 0.05 elsewhere: only a threshold < 0.3 finds it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lung = (x > 0).float()
        p_inf = torch.where(x > 0.9, 0.3, 0.05) * lung
        p_bg = 1 - lung * 0.9
        probs = torch.cat([p_bg, 1 - p_bg - p_inf, p_inf], dim=1).clamp_min(1e-6)
        return probs.log()


@pytest.mark.slow
def test_validation_calibrates_the_infection_threshold() -> None:
    from dsan_core.segmentation.training import THRESHOLD_GRID, _validate

    labels = np.zeros((8, 16, 16), np.uint8)
    labels[2:6, 2:14, 2:14] = 1
    labels[3:5, 4:8, 4:8] = 2
    image = (labels > 0).astype(np.float32) * 0.5
    image[labels == 2] = 1.0
    cache = CaseCache([], CONFIG, 4)
    cache._items[0] = PreparedCase("v0", image, labels)
    config = CONFIG.model_copy(update={"patch_size": (8, 16, 16)})
    lung_dice, majority, threshold, calibrated = _validate(ProbabilityOracle(), cache, 1, config,
                                                           CPU)
    assert lung_dice == pytest.approx(1.0)
    assert majority == pytest.approx(0.0)  # p_infection 0.3 never passes 0.5
    assert calibrated == pytest.approx(1.0)
    assert threshold in THRESHOLD_GRID and 0.05 < threshold < 0.3


@pytest.mark.slow
def test_the_best_epochs_threshold_is_kept_and_used_when_asked(
        trained: tuple[Any, list[dict[str, Any]]]) -> None:
    from dsan_core.segmentation.training import THRESHOLD_GRID, infection_threshold_of

    result, saved = trained
    best = result.history[result.best_epoch - 1]
    assert result.infection_threshold == best.infection_threshold
    assert result.infection_threshold in THRESHOLD_GRID
    assert saved[-1]["best_infection_threshold"] == result.infection_threshold
    assert infection_threshold_of(saved[-1], CONFIG) == 0.5  # the default majority rule
    calibrate = CONFIG.model_copy(update={"infection_threshold": "calibrate"})
    assert infection_threshold_of(saved[-1], calibrate) == result.infection_threshold
    fixed = CONFIG.model_copy(update={"infection_threshold": 0.42})
    assert infection_threshold_of(saved[-1], fixed) == 0.42
    # Only inference-side settings changed: the model's training identity does not.
    assert fixed.training_fingerprint() == calibrate.training_fingerprint() \
        == CONFIG.training_fingerprint()
    assert fixed.fingerprint() != CONFIG.fingerprint()
    with pytest.raises(ModelError, match="infection_threshold"):
        infection_threshold_of({"best_model": {}}, calibrate)


def test_infection_threshold_must_be_a_probability() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="probability"):
        VBNetConfig(infection_threshold=1.2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_mixed_precision_training_checkpoint_and_inference() -> None:
    from dsan_core.segmentation.inference import segment_volume

    cuda = torch.device("cuda")
    config = CONFIG.model_copy(update={"mixed_precision": True})
    saved: list[dict[str, Any]] = []
    result = train_vbnet(CASES, CASES[:1], config, device=cuda, resume=None,
                         on_epoch_end=lambda checkpoint, report: saved.append(checkpoint),
                         log=lambda _: None)
    assert np.isfinite(result.history[-1].train_loss)
    assert saved[-1]["scaler"]
    buffer = io.BytesIO()
    torch.save(saved[-1], buffer)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=True)
    model = load_vbnet(restored, config, cuda)
    volume = tiny_volume(0)
    lung, infection = segment_volume(model, volume.hu, volume.spacing, config, cuda)
    assert lung.shape == volume.hu.shape and not (infection & ~lung.astype(bool)).any()
