from __future__ import annotations

import numpy as np
import pytest

from dsan_core.config import GateConfig
from dsan_core.evaluation.champion import compare_with_champion

Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 1, 0])
GOOD = np.array([0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1, 0.55, 0.45])
PATIENTS = np.array([f"P-{i // 2}" for i in range(10)])
CONFIG = GateConfig(bootstrap_samples=200, margin=0.02)


def test_an_equal_challenger_is_promoted_with_its_numbers() -> None:
    decision = compare_with_champion(Y, GOOD, GOOD, PATIENTS, CONFIG)
    assert decision.promote and "not worse" in decision.reason
    numbers = decision.numbers()
    assert set(numbers) == {"auc", "sensitivity", "specificity"}
    assert numbers["auc"]["difference"] == 0.0 and numbers["auc"]["p_value"] == 1.0


def test_a_worse_challenger_is_rejected_naming_the_metric() -> None:
    worse = GOOD.copy()
    worse[[0, 1]] = 0.2  # two COVID scans called CAP: sensitivity drops, AUC too
    decision = compare_with_champion(Y, worse, GOOD, PATIENTS, CONFIG)
    assert not decision.promote
    assert "sensitivity (0.600 vs 1.000)" in decision.reason
    sens = decision.numbers()["sensitivity"]
    assert sens["difference"] == pytest.approx(-0.4)
    assert sens["ci_low"] <= sens["difference"] <= sens["ci_high"]


def test_the_margin_tolerates_small_losses() -> None:
    slightly = GOOD.copy()
    slightly[8] = 0.45  # one COVID scan now called CAP: sensitivity 0.8 instead of 1.0
    lenient = GateConfig(bootstrap_samples=100, margin=0.5)
    assert compare_with_champion(Y, slightly, GOOD, PATIENTS, lenient).promote
