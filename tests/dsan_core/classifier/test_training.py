from __future__ import annotations

import dataclasses
import io
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dsan_core.branches import TRAINED
from dsan_core.classifier import (
    CHECKPOINT_FORMAT,
    ClassifierCase,
    ClassifierEpochReport,
    ClassifierTrainResult,
    attention_map,
    branch_seed,
    epoch_learning_rate,
    load_classifier,
    predict_probabilities,
    train_classifier,
)
from dsan_core.classifier.selection import selection_key
from dsan_core.config import TrainConfig
from dsan_core.errors import InputError, ModelError
from tests.dsan_core.classifier.cases import TRAIN_GROUPS, VAL_GROUPS, make_cases, write_case

torch.set_num_threads(1)
CPU = torch.device("cpu")
CONFIG = TrainConfig(width=4, batch_size=2, epochs=3, lr_step_epochs=2,
                     learning_rate=1e-3, mixed_precision=False, val_batch_size=3)
LAST = CONFIG.model_copy(update={"epoch_selection": "last"})


class Killed(Exception):
    """Stands in for a task killed right after a checkpoint was written."""


def _round_trip(checkpoint: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    loaded: dict[str, Any] = torch.load(buffer, weights_only=True)
    return loaded


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[ClassifierCase],
                                                            list[ClassifierCase]]:
    folder = tmp_path_factory.mktemp("classifier-cases")
    return (make_cases(folder, TRAIN_GROUPS, "tr", seed=0),
            make_cases(folder, VAL_GROUPS, "va", seed=50))


def _train(train: list[ClassifierCase], *, branch: str = "att_ss",
           config: TrainConfig = CONFIG, resume: dict[str, Any] | None = None,
           kill_after: int | None = None, fold: int | str | None = 1,
           saved: list[dict[str, Any]] | None = None,
           ) -> tuple[ClassifierTrainResult, list[dict[str, Any]], list[ClassifierEpochReport]]:
    saved = [] if saved is None else saved
    reports: list[ClassifierEpochReport] = []

    def keep(checkpoint: dict[str, Any], report: ClassifierEpochReport) -> None:
        saved.append(_round_trip(checkpoint))
        reports.append(report)
        if kill_after is not None and report.epoch == kill_after:
            raise Killed

    result = train_classifier(train, config, branch=branch, seed=branch_seed(7, 1, branch),
                              device=CPU, resume=resume, on_epoch_end=keep,
                              log=lambda _: None, fold=fold)
    return result, saved, reports


def _strip_seconds(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != "seconds"} for item in history]


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_a_kill_equals_an_uninterrupted_run(cases: Any) -> None:
    train, val = cases
    full, saved, _ = _train(train)
    killed_saved: list[dict[str, Any]] = []
    with pytest.raises(Killed):
        _train(train, kill_after=1, saved=killed_saved)
    assert len(killed_saved) == 1 and killed_saved[0]["epoch"] == 1
    resumed, resumed_saved, reports = _train(train, resume=killed_saved[0])
    assert [r.epoch for r in reports] == [2, 3]
    last, again = saved[-1], resumed_saved[-1]
    assert _same_state(last["model"], again["model"])
    assert _same_state(last["best_model"], again["best_model"])
    assert last["best_epoch"] == again["best_epoch"] == resumed.best_epoch
    assert _strip_seconds(last["history"]) == _strip_seconds(again["history"])
    assert _same_state(full.model.state_dict(), resumed.model.state_dict())
    assert _same_state(full.model.state_dict(), last["best_model"])


def test_checkpoint_format_report_and_schedule(cases: Any) -> None:
    train, _ = cases
    result, saved, reports = _train(train)
    checkpoint = saved[-1]
    assert checkpoint["format"] == CHECKPOINT_FORMAT
    assert (checkpoint["branch"], checkpoint["fold"], checkpoint["epoch"]) == ("att_ss", "1", 3)
    # Inner split: one of the two covid_small and one of the two cap_small patients are
    # held out; the single covid_large and cap_large patients stay in the fitted part.
    select = checkpoint["select_scan_ids"]
    assert sorted(c.sampling_group for c in train if c.scan_id in select) == [
        "cap_small", "covid_small"]
    assert sorted(checkpoint["fit_scan_ids"] + select) == sorted(c.scan_id for c in train)
    assert checkpoint["sampler"] == {
        "kind": "size_balanced",
        "weights": {"covid_small": 1.0, "covid_large": 1.0, "cap_small": 1.0, "cap_large": 1.0},
        "group_counts": {"covid_small": 1, "covid_large": 1, "cap_small": 1, "cap_large": 1},
        "num_samples": 4,
    }
    assert (result.n_fit, result.n_select) == (4, 2)
    assert result.sampler_weights == checkpoint["sampler"]["weights"]
    assert TrainConfig.model_validate(checkpoint["config"]) == CONFIG
    assert checkpoint["training_fingerprint"] == CONFIG.training_fingerprint()
    assert checkpoint["train_scan_ids"] == [c.scan_id for c in train]
    assert [r.lr for r in reports] == pytest.approx([1e-3, 1e-3, 1e-4])
    assert [r.epoch for r in reports] == [1, 2, 3]
    for report in reports:
        assert set(dataclasses.asdict(report)) == {
            "epoch", "lr", "loss", "loss_c", "loss_ex", "select_auc", "select_loss", "seconds",
            "best_epoch", "best_select_auc", "is_best"}
        assert report.loss == pytest.approx(report.loss_c + 0.5 * report.loss_ex)
        assert 0 <= report.select_auc <= 1 and report.select_loss > 0 and report.loss_ex >= 0
    best = reports[result.best_epoch - 1]
    assert best.is_best and result.select_auc == best.select_auc == reports[-1].best_select_auc
    assert max(r.select_auc for r in reports) == best.select_auc


def test_baseline_uses_bce_only_and_never_reads_infection_masks(cases: Any) -> None:
    train, val = cases

    def no_mask() -> np.ndarray:
        raise AssertionError("the baseline read an infection mask")

    blind = [dataclasses.replace(case, infection=no_mask) for case in train]
    result, saved, reports = _train(blind, branch="rn34_us",
                                    config=CONFIG.model_copy(update={"epochs": 1}))
    assert math.isnan(reports[0].loss_ex) and reports[0].loss == reports[0].loss_c
    assert saved[0]["sampler"]["kind"] == "uniform" and saved[0]["sampler"]["weights"] == {}
    assert result.branch == "rn34_us" and not result.model.training


def test_epoch_selection_prefers_auc_then_lower_loss_and_ranks_nan_last() -> None:
    assert selection_key(0.9, 0.5) > selection_key(0.8, 0.1)
    assert selection_key(0.9, 0.4) > selection_key(0.9, 0.5)
    assert selection_key(0.1, 2.0) > selection_key(math.nan, 0.1)
    assert selection_key(math.nan, 0.1) > selection_key(math.nan, 0.2)
    assert not selection_key(0.9, 0.5) > selection_key(0.9, 0.5)  # a tie keeps the earlier


def test_fixed_epochs_keep_the_last_and_train_on_every_scan(cases: Any) -> None:
    train, _ = cases
    config = LAST.model_copy(update={"epochs": 2})
    result, saved, reports = _train(train, branch="att_us", config=config)
    assert all(r.is_best and math.isnan(r.select_auc) and math.isnan(r.select_loss)
               for r in reports)
    assert result.best_epoch == 2 and (result.n_fit, result.n_select) == (6, 0)
    assert saved[-1]["select_scan_ids"] == [] and saved[-1]["fit_scan_ids"] == [
        c.scan_id for c in train]
    assert _same_state(result.model.state_dict(), saved[-1]["model"])


def test_an_inner_split_without_both_classes_is_refused(cases: Any) -> None:
    train, _ = cases
    covid = [c for c in train if c.label == 1] + [c for c in train if c.label == 0][:1]
    with pytest.raises(ModelError, match="fold 1: branch att_us: the inner validation split "
                                         "needs COVID and CAP"):
        _train(covid, branch="att_us")


def test_empty_sampling_group_names_the_fold_and_the_group(cases: Any) -> None:
    train, val = cases
    without = [c for c in train if c.sampling_group != "cap_large"]
    with pytest.raises(ModelError, match="fold 2: .*cap_large"):
        _train(without, fold=2)
    # Uniform sampling needs no group (4 scans: 16^3 leaves BatchNorm one voxel per
    # channel, so a last batch of one scan could not train).
    _train(without[:4], branch="att_us", config=LAST.model_copy(update={"epochs": 1}))


def test_resume_refuses_foreign_or_mismatched_checkpoints(cases: Any) -> None:
    train, val = cases
    one = CONFIG.model_copy(update={"epochs": 1})
    _, saved, _ = _train(train, config=one)
    with pytest.raises(ModelError, match="checkpoint"):
        _train(train, resume={"format": "dsan-vbnet-checkpoint-v1"})
    with pytest.raises(ModelError, match="branch"):
        _train(train, branch="att_us", resume=saved[0])
    with pytest.raises(ModelError, match="fit_scan_ids"):
        _train(train[:5] + [dataclasses.replace(train[5], scan_id="tr9")], resume=saved[0])
    other = CONFIG.model_copy(update={"attention_lambda": 1.0})
    with pytest.raises(ModelError, match="config"):
        _train(train, config=other, resume=saved[0])
    with pytest.raises(ModelError, match="more than the 1 configured"):
        _train(train, config=one, resume=_train(train, config=CONFIG)[1][-1])
    # Runtime-only settings and more epochs are no reason to refuse.
    _, _, reports = _train(train, resume=saved[0],
                           config=CONFIG.model_copy(update={"val_batch_size": 1, "epochs": 2}))
    assert [r.epoch for r in reports] == [2]


def test_bad_cases_are_errors_naming_the_scan(cases: Any, tmp_path: Path) -> None:
    train, val = cases
    with pytest.raises(ModelError, match="at least one training scan"):
        _train([])
    bad_label = [dataclasses.replace(train[0], label=2)] + train[1:]
    with pytest.raises(InputError, match="scan tr0: expected label"):
        _train(bad_label)
    mixed_up = [dataclasses.replace(train[0], sampling_group="cap_small")] + train[1:]
    with pytest.raises(InputError, match="scan tr0: sampling group 'cap_small' does not fit"):
        _train(mixed_up)
    odd = write_case(tmp_path, "odd", "cap_small", 0, seed=9, shape=(16, 16, 17))
    with pytest.raises(InputError, match=r"expected every scan in one pre-processed shape") \
            as caught:
        _train(train[:1] + [odd], branch="att_us", config=LAST)
    assert "scan tr0" in str(caught.value) and "scan odd" in str(caught.value)
    other_mask = dataclasses.replace(train[0], infection=lambda: np.zeros((16, 16, 8), np.uint8))
    with pytest.raises(InputError, match="scan tr0: expected the infection mask"):
        _train([other_mask] + train[1:], branch="att_us", config=LAST)


def test_prediction_maps_and_loading(cases: Any) -> None:
    train, val = cases
    result, saved, _ = _train(train, branch="att_us",
                              config=CONFIG.model_copy(update={"epochs": 2}))
    checkpoint = saved[-1]
    model = load_classifier(checkpoint, CONFIG, CPU)
    assert not model.training and _same_state(model.state_dict(), checkpoint["best_model"])
    probs = predict_probabilities(model, val, device=CPU, batch_size=3)
    assert probs.shape == (4,) and probs.dtype == np.float64
    assert ((probs > 0) & (probs < 1)).all()
    one_by_one = [predict_probabilities(model, [c], device=CPU, batch_size=1)[0] for c in val]
    np.testing.assert_allclose(probs, one_by_one, rtol=1e-5)
    assert predict_probabilities(model, [], device=CPU, batch_size=2).shape == (0,)
    for kind in ("attention", "soft_attention", "grad_cam"):
        heat = attention_map(model, val[0], device=CPU, kind=kind)  # type: ignore[arg-type]
        assert heat.shape == (16, 16, 16) and heat.dtype == np.float32
        assert heat.min() >= 0 and heat.max() <= 1
    with pytest.raises(ModelError, match="width 8"):
        load_classifier(checkpoint, CONFIG.model_copy(update={"width": 8}), CPU)
    with pytest.raises(ModelError, match="feature_stride 8, found 16"):
        load_classifier(checkpoint, CONFIG.model_copy(update={"feature_stride": 8}), CPU)
    # A checkpoint from before the stride was a setting has the paper's 16.
    older = checkpoint | {"config": {k: v for k, v in checkpoint["config"].items()
                                     if k != "feature_stride"}}
    assert load_classifier(older, CONFIG, CPU).feature_stride == 16
    with pytest.raises(ModelError, match="checkpoint"):
        load_classifier({"format": "other"}, CONFIG, CPU)


def test_cases_are_picklable_for_dataloader_workers(cases: Any) -> None:
    train, _ = cases
    again = pickle.loads(pickle.dumps(train[0]))
    np.testing.assert_array_equal(again.image(), train[0].image())


def test_dataloader_workers_give_the_same_model(cases: Any) -> None:
    train, val = cases
    one = CONFIG.model_copy(update={"epochs": 1})
    _, serial, _ = _train(train, config=one)
    _, workers, _ = _train(train, config=one.model_copy(update={"num_workers": 1}))
    assert _same_state(serial[0]["model"], workers[0]["model"])


def test_branches_seeds_and_schedule() -> None:
    assert TRAINED == ("att_us", "att_ss", "rn34_us")
    seeds = {branch_seed(0, fold, b) for fold in range(5) for b in TRAINED}
    assert len(seeds) == 15 and branch_seed(0, 1, "att_us") == branch_seed(0, 1, "att_us")
    with pytest.raises(ModelError, match="branch"):
        branch_seed(0, 1, "att_ds")
    paper = TrainConfig()
    assert [epoch_learning_rate(paper, e) for e in (0, 4, 5, 10, 19)] == pytest.approx(
        [2e-4, 2e-4, 2e-5, 2e-6, 2e-7])


def test_train_config_fingerprints() -> None:
    base = TrainConfig()
    runtime = base.model_copy(update={"num_workers": 4, "val_batch_size": 1,
                                      "channels_last_3d": True})
    assert runtime.training_fingerprint() == base.training_fingerprint()
    assert runtime.fingerprint() != base.fingerprint()
    for change in ({"attention_lambda": 1.0}, {"balanced_samples_per_epoch": 100},
                   {"mixed_precision": False}, {"adam_beta1": 0.8}):
        assert base.model_copy(update=change).training_fingerprint() != \
            base.training_fingerprint()
    assert (base.batch_size, base.epochs, base.learning_rate, base.weight_decay,
            base.attention_lambda, base.adam_beta1, base.num_workers) == (
        20, 20, 2e-4, 1e-4, 0.5, 0.9, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_training_step_and_checkpoint_round_trip(cases: Any) -> None:
    train, val = cases
    cuda = torch.device("cuda")
    config = CONFIG.model_copy(update={"epochs": 1, "mixed_precision": True})
    saved: list[dict[str, Any]] = []
    result = train_classifier(train, config, branch="att_ss", seed=3, device=cuda,
                              resume=None, on_epoch_end=lambda c, r: saved.append(c),
                              log=lambda _: None, fold=0)
    assert math.isfinite(result.history[0].loss) and math.isfinite(result.history[0].loss_ex)
    restored = _round_trip(saved[0])
    assert all(t.device.type == "cpu" for t in restored["model"].values())
    model = load_classifier(restored, config, cuda)
    assert next(model.parameters()).device.type == "cuda"
    probs = predict_probabilities(model, val, device=cuda, batch_size=2)
    assert probs.shape == (4,) and np.isfinite(probs).all()
    resumed = train_classifier(train, config.model_copy(update={"epochs": 2}),
                               branch="att_ss", seed=3, device=cuda, resume=restored,
                               on_epoch_end=lambda c, r: None, log=lambda _: None, fold=0)
    assert [r.epoch for r in resumed.history] == [1, 2]


def test_mirroring_flips_whole_scans_with_their_masks() -> None:
    from dsan_core.classifier.augment import mirror_left_right

    x = torch.arange(2 * 1 * 2 * 2 * 3, dtype=torch.float32).reshape(2, 1, 2, 2, 3)
    mask = x > 5
    torch.manual_seed(0)
    expected = torch.rand(2) < 0.5
    torch.manual_seed(0)
    flipped, flipped_mask = mirror_left_right(x, mask)
    assert flipped_mask is not None
    for i in range(2):
        want = x[i].flip(-1) if expected[i] else x[i]
        assert torch.equal(flipped[i], want)
        assert torch.equal(flipped_mask[i], (want > 5))


def test_intensity_jitter_shifts_each_scans_lung_only() -> None:
    from dsan_core.classifier.augment import shift_lung_intensity

    x = torch.zeros(3, 1, 2, 2, 2)
    x[:, :, 0] = 0.5  # lung: the first slice
    x[2, :, 0, 0, 0] = 0.99
    torch.manual_seed(4)
    expected = (torch.rand(3) * 2 - 1) * 0.1
    torch.manual_seed(4)
    out = shift_lung_intensity(x, 0.1)
    assert torch.equal(out[:, :, 1], x[:, :, 1])  # outside the lung stays 0
    for i in range(2):
        assert torch.allclose(out[i, :, 0], torch.full((1, 2, 2), 0.5 + float(expected[i])))
    assert float(out[2, 0, 0, 0, 0]) == pytest.approx(min(0.99 + float(expected[2]), 1.0))


def test_precise_batch_norm_sets_the_training_sets_statistics(cases: Any) -> None:
    from dsan_core.classifier.calibration import recalibrate_batch_norm
    from dsan_core.classifier.checkpoints import build_classifier
    from dsan_core.classifier.data import make_loader

    train, _ = cases
    torch.manual_seed(0)
    model = build_classifier(CONFIG)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d))
    seen: list[torch.Tensor] = []
    hook = first.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0].detach()))
    loader = make_loader(train, batch_size=2, sampler=None, with_infection=False, num_workers=0,
                         device=CPU)
    first.running_mean.fill_(123.0)  # statistics of weights long gone
    recalibrate_batch_norm(model, loader, device=CPU, mixed_precision=False)
    hook.remove()
    batch_means = torch.stack([batch.mean(dim=(0, 2, 3, 4)) for batch in seen])
    assert torch.allclose(first.running_mean, batch_means.mean(dim=0), atol=1e-5)
    assert first.momentum == 0.1  # restored for training


@pytest.mark.parametrize("options", [
    {"precise_batch_norm": True},
    {"augment": True},
    {"augment": True, "intensity_jitter": 0.05},
    {"calibrate_logits": True},
], ids=["precise_batch_norm", "mirror", "jitter", "calibrate_logits"])
def test_training_options_keep_resume_identical(cases: Any, options: dict[str, Any]) -> None:
    train, val = cases
    config = CONFIG.model_copy(update=options)
    full, saved, _ = _train(train, config=config)
    killed: list[dict[str, Any]] = []
    with pytest.raises(Killed):
        _train(train, config=config, kill_after=1, saved=killed)
    resumed, again, _ = _train(train, config=config, resume=killed[0])
    assert _same_state(saved[-1]["model"], again[-1]["model"])
    assert _same_state(full.model.state_dict(), resumed.model.state_dict())
    assert _same_state(full.model.state_dict(), resumed.checkpoint["best_model"])


def test_calibrated_logits_centre_and_scale_on_the_training_scans(cases: Any) -> None:
    from dsan_core.classifier import predict_logits

    train, val = cases
    plain, _, _ = _train(train, branch="att_us")
    config = CONFIG.model_copy(update={"calibrate_logits": True})
    calibrated, saved, _ = _train(train, branch="att_us", config=config)
    state = calibrated.model.state_dict()
    shift, scale = float(state["logit_shift"]), float(state["logit_scale"])
    assert scale > 0 and (shift, scale) != (0.0, 1.0)
    # The weights are the uncalibrated run's; only the two buffers differ.
    weights = {k: v for k, v in state.items() if not k.startswith("logit_")}
    assert _same_state(weights, {k: v for k, v in plain.model.state_dict().items()
                                 if not k.startswith("logit_")})
    on_train = predict_logits(calibrated.model, train, device=CPU, batch_size=3)
    labels = np.array([c.label for c in train])
    midpoint = (on_train[labels == 1].mean() + on_train[labels == 0].mean()) / 2
    assert abs(midpoint) < 1e-4 and abs(on_train.std() - 1.0) < 1e-4
    raw = predict_logits(plain.model, val, device=CPU, batch_size=3)
    assert np.allclose(predict_logits(calibrated.model, val, device=CPU, batch_size=3),
                       (raw - shift) / scale, atol=1e-4)
    # The final checkpoint carries the calibrated model; a finished run resumed agrees.
    final = saved[-1] | {"best_model": calibrated.checkpoint["best_model"]}
    loaded = load_classifier(_round_trip(final), config, CPU)
    assert _same_state(loaded.state_dict(), state)
    assert calibrated.checkpoint["calibration"] == {"logit_shift": shift, "logit_scale": scale}
    again, _, _ = _train(train, branch="att_us", config=config, resume=saved[-1])
    assert _same_state(again.model.state_dict(), state)


def test_checkpoints_from_before_calibration_load_uncalibrated(cases: Any) -> None:
    train, val = cases
    result, saved, _ = _train(train, branch="rn34_us")
    old = saved[-1] | {"best_model": {k: v for k, v in saved[-1]["best_model"].items()
                                      if not k.startswith("logit_")}}
    model = load_classifier(old, CONFIG, CPU)
    assert float(model.logit_shift) == 0.0 and float(model.logit_scale) == 1.0
    assert _same_state(model.state_dict(), result.model.state_dict())
