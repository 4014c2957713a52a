"""Classifier training through the real Prefect engine on the test profile: 2 folds x 3
branches as concurrent tasks behind the `gpu` tag's limit, the three tables, the cache."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import torch

from dsan_core.branches import TRAINED
from dsan_core.groups import LABEL_COVID
from flows import training
from flows.training import GPU_TAG, training_flow
from storage.layout import DataLayout
from storage.tables import read_table

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


def _task_run_tags(name: str, since: datetime) -> list[str]:
    """The tags of the one task run called `name` that started after `since` (this
    worker's harness has run others of that name), once Prefect has recorded it: from
    its events, up to a few seconds after it ran."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        TaskRunFilter,
        TaskRunFilterName,
        TaskRunFilterStartTime,
    )

    deadline = time.monotonic() + 30
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(task_run_filter=TaskRunFilter(
                name=TaskRunFilterName(any_=[name]),
                start_time=TaskRunFilterStartTime(after_=since)))
            if runs or time.monotonic() > deadline:
                assert len(runs) == 1, [run.name for run in runs]
                return sorted(runs[0].tags)
            time.sleep(0.2)


def test_training_writes_three_tables_and_reruns_from_cache(
        prepared_copy: Path, test_config, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    root = prepared_copy  # segmented, split and pre-processed (conftest)
    layout = DataLayout(root)
    started = datetime.now(UTC)
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
    other_seed = test_config.train.model_copy(update={"seed": 99})
    # ... here as on the embedded API of `dsan run`, which no other run shares: the
    # trainings go without the `gpu` tag (on the harness, a shared API, they carry it).
    assert _task_run_tags("train fold 1 att_ss", started) == [GPU_TAG]
    monkeypatch.setattr(training, "shared_prefect_api", lambda: False)
    started = datetime.now(UTC)
    one = training_flow(other_seed, test_config.split, test_config.runtime, root, folds=(1,),
                        branches=("att_ss",))
    assert [(b.fold, b.branch, b.trained) for b in one.branches] == [(1, "att_ss", True)]
    assert one.tables.models == 1 and len(one.tables.missing) == n_folds * 3 - 1
    assert _task_run_tags("train fold 1 att_ss", started) == []
