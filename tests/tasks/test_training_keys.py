"""The classifier's cache keys: a fold's validation scans never reach its training."""

from __future__ import annotations

import dataclasses

import numpy as np

from dsan_core.classifier import ClassifierCase
from dsan_core.config import TrainConfig
from dsan_core.splits import FoldScans
from storage.stage_cache import Manifest
from tasks._common.contract import item_key
from tasks.training import TRAIN_STAGE, VERSION, FoldData, prediction_item, training_item

CONFIG = TrainConfig(epoch_selection="last")


def _case(scan: str, label: int) -> ClassifierCase:
    group = "covid_large" if label else "cap_small"
    return ClassifierCase(scan, label, group, lambda: np.zeros(1), lambda: np.zeros(1),
                          patient_id=f"P-{scan}")


def _data(**changes: tuple[str, int]) -> FoldData:
    scans = FoldScans(0, ("t1", "t2", "t3"), ("v1", "v2"), ("x1",))
    labels = {"t1": 1, "t2": 0, "t3": 1, "v1": 1, "v2": 0, "x1": 1}
    hashes = {scan: f"{scan}-input:{scan}-mask" for scan in labels}
    for scan, (digest, label) in changes.items():
        hashes[scan], labels[scan] = digest, label
    return FoldData(scans, {scan: _case(scan, label) for scan, label in labels.items()}, hashes)


def _key(data: FoldData) -> str:
    return item_key(training_item(data, CONFIG, 0, "att_us"), TRAIN_STAGE, VERSION,
                    CONFIG.training_fingerprint())


def test_validation_scans_change_predictions_never_the_training_key() -> None:
    base = _data()
    # Another image and even another label for a validation scan: the same model.
    changed = _data(v1=("other-input:other-mask", 0))
    assert _key(changed) == _key(base)
    model = Manifest(TRAIN_STAGE, _key(base), {"model": {"path": "m", "sha256": "abc"}}, {})
    assert (prediction_item(changed, model, "val").inputs
            != prediction_item(base, model, "val").inputs)
    assert (prediction_item(changed, model, "test").inputs
            == prediction_item(base, model, "test").inputs)
    # A training scan's image, label or patient does change the model.
    assert _key(_data(t2=("other-input:t2-mask", 0))) != _key(base)
    assert _key(_data(t2=("t2-input:t2-mask", 1))) != _key(base)
    moved = dataclasses.replace(base, cases={**base.cases, "t1": dataclasses.replace(
        base.cases["t1"], patient_id="P-t2")})
    assert _key(moved) != _key(base)
