"""Classifier training through the real Prefect engine on the test profile: 2 folds x 3
branches as concurrent tasks behind the `gpu` limit on a shared API, the three tables, the
cache."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch

from dsan_core.branches import TRAINED
from dsan_core.groups import LABEL_COVID
from flows import training
from flows.training import TrainingResult, training_flow
from storage.layout import DataLayout
from storage.lineage import read_lineage
from storage.tables import read_table

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


def _last_training_start(layout: DataLayout) -> datetime:
    rows = read_lineage(layout)
    return rows[rows["stage"] == "classifier-train"]["started_at"].iloc[-1].to_pydatetime()


def test_training_writes_three_tables_and_reruns_from_cache(
        prepared_copy: Path, test_config, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
        caplog: pytest.LogCaptureFixture) -> None:
    root = prepared_copy  # segmented, split and pre-processed (conftest)
    layout = DataLayout(root)
    first = training_flow(test_config.train, test_config.split, test_config.runtime, root)
    n_folds = test_config.split.n_folds
    assert len(first.branches) == n_folds * 3 and all(b.trained for b in first.branches)
    runs = read_table(layout, "training_runs")
    assert sorted(zip(runs["fold"], runs["branch"], strict=True)) == sorted(
        (f, b) for f in range(n_folds) for b in TRAINED)
    weights = {b: json.loads(w) for b, w in zip(runs["branch"], runs["sampler_weights"],
                                                  strict=True)}
    assert weights["att_us"] == {} and set(weights["att_ss"]) == {
        "covid_small", "covid_large", "cap_small", "cap_large"}
    history = read_table(layout, "training_history")
    assert len(history) == n_folds * 3 * test_config.train.epochs
    # Out-of-fold: every TV scan once per branch; test: every test scan once per fold model.
    predictions = read_table(layout, "predictions")
    splits = read_table(layout, "splits")
    tv, test = splits[splits["set"] == "tv"], splits[splits["set"] == "test"]
    val = predictions[predictions["set"] == "val"]
    for branch in TRAINED:
        rows = val[val["branch"] == branch]
        assert sorted(rows["scan_id"]) == sorted(tv["scan_id"])
        assert (rows.merge(tv, on="scan_id")["fold_x"]
                == rows.merge(tv, on="scan_id")["fold_y"]).all()
    on_test = predictions[predictions["set"] == "test"]
    assert len(on_test) == len(test) * n_folds * 3
    assert predictions["probability"].between(0, 1).all()
    # Checkpoints load with weights_only=True and say what they were trained on.
    state = torch.load(layout.resolve(runs["checkpoint_path"].iloc[0]), weights_only=True)
    assert {"best_model", "config", "train_scan_ids", "model_key", "code_version"} <= set(state)
    assert layout.figure("training", "curves_fold_0.png").stat().st_size > 0
    labels = read_table(layout, "groups").set_index("scan_id")["label"]
    assert set(labels.loc[tv["scan_id"]]) == {LABEL_COVID, "CAP"}

    # A rerun trains nothing; retraining one branch of one fold leaves the others alone.
    again = training_flow(test_config.train, test_config.split, test_config.runtime, root)
    assert not any(b.trained for b in again.branches)
    # Retraining one branch of one fold: on the embedded API of `dsan run`, which no other
    # run shares, it takes no slot of the `gpu` limit (it trains while another run holds it).
    def retrain(seed: int) -> TrainingResult:
        return training_flow(test_config.train.model_copy(update={"seed": seed}),
                             test_config.split, test_config.runtime, root, folds=(1,),
                             branches=("att_ss",))

    done: list[TrainingResult] = []
    # The test holds the `gpu` limit's only slot, as another run's trainings would.
    with monkeypatch.context() as embedded, training.gpu_slots(1):
        embedded.setattr(training, "shared_prefect_api", lambda: False)
        alone = threading.Thread(target=lambda: done.append(retrain(99)))
        alone.start()
        alone.join(timeout=120)
        assert done, "the training on the embedded API waited for the held slot"
    one = done.pop()
    assert [(b.fold, b.branch, b.trained) for b in one.branches] == [(1, "att_ss", True)]
    assert one.tables.models == 1 and len(one.tables.missing) == n_folds * 3 - 1
    # On a shared API (the harness) it waits for the slot.
    with training.gpu_slots(1):
        waiting = threading.Thread(target=lambda: done.append(retrain(98)))
        waiting.start()
        time.sleep(2.0)  # the training alone takes < 1 s here
        released = datetime.now(UTC)
    waiting.join(timeout=120)
    assert done, "the training that waited for the slot did not finish"
    assert [(b.fold, b.branch, b.trained) for b in done[0].branches] == [(1, "att_ss", True)]
    assert _last_training_start(layout) > released
    assert "training waits for the `gpu` limit: other runs hold 1 of its 1 slots" in caplog.text


def test_a_run_lowering_the_gpu_limit_does_not_fail_one_waiting_for_its_slots(
        caplog: pytest.LogCaptureFixture) -> None:
    """Two runs on one server ask for different numbers of slots (2 and 1 devices, say).
    The run with one device sets the limit to 1 while the other waits for 2: Prefect then
    refuses the waiting run's request (422, more slots than the limit), which used to
    fail its training flow. It sets the limit again and goes on waiting."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    entered = threading.Event()
    failures: list[BaseException] = []

    @flow(name="two-devices")
    def two_devices() -> None:
        with training.gpu_slots(2):
            entered.set()

    def run() -> None:
        try:
            two_devices()
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(error)

    with training.gpu_slots(2):  # another run holds both slots
        waiting = threading.Thread(target=run)
        waiting.start()
        deadline = time.monotonic() + 60
        while "training waits for the `gpu` limit" not in caplog.text:  # it set the limit
            assert time.monotonic() < deadline and waiting.is_alive(), failures
            time.sleep(0.1)
        with get_client(sync_client=True) as client:  # the run with one device
            client.update_global_concurrency_limit(training.GPU_LIMIT,
                                                   GlobalConcurrencyLimitUpdate(limit=1))
    waiting.join(timeout=120)
    assert not failures, failures
    assert entered.is_set()
    assert ("another run set the `gpu` limit below the 2 slots this training asked for: "
            "set to 2 again") in caplog.text
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(training.GPU_LIMIT)
    assert (limit.limit, limit.active_slots) == (2, 0)
