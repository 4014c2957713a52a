"""Classifier training through the real Prefect engine on the test profile: 2 folds x 3
branches as concurrent tasks behind the `gpu` tag's limit, the three tables, the cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dsan_core.branches import TRAINED
from dsan_core.groups import LABEL_COVID
from flows.training import training_flow
from storage.layout import DataLayout
from storage.tables import read_table

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


def test_training_writes_three_tables_and_reruns_from_cache(prepared_copy: Path,
                                                            test_config) -> None:  # type: ignore[no-untyped-def]
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
    other_seed = test_config.train.model_copy(update={"seed": 99})
    one = training_flow(other_seed, test_config.split, test_config.runtime, root, folds=(1,),
                        branches=("att_ss",))
    assert [(b.fold, b.branch, b.trained) for b in one.branches] == [(1, "att_ss", True)]
    assert one.tables.models == 1 and len(one.tables.missing) == n_folds * 3 - 1


def test_slots_left_by_a_killed_run_are_reclaimed_on_the_embedded_api() -> None:
    from prefect.client.orchestration import get_client

    from flows.training import set_concurrency_limit

    tag = "gpu-reclaim-test"
    assert set_concurrency_limit(tag, 1) == 0
    with get_client(sync_client=True) as client:
        client.increment_concurrency_slots(names=[f"tag:{tag}"], slots=1, mode="concurrency")
        held = client.read_global_concurrency_limit_by_name(f"tag:{tag}").active_slots
    assert held == 1
    # A shared server (PREFECT_API_URL set, as under the test harness) keeps the slot: its
    # lease may belong to another data root's run.
    assert set_concurrency_limit(tag, 1) == 0
    assert set_concurrency_limit(tag, 1, reclaim=True) == 1
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(f"tag:{tag}").active_slots == 0
