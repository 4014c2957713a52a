"""The model registry's rules on constructed cases: the id, the gate's inputs and
decision, and the statuses a model moves through."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from dsan_core import registry
from dsan_core.config import GateConfig
from dsan_core.errors import RegistryError
from dsan_core.registry import PROMOTED, REJECTED, RETIRED

SCANS = [f"S{i}" for i in range(10)]
LABELS = ["COVID"] * 4 + ["CAP"] * 4 + ["COVID", "CAP"]
GROUPS = pd.DataFrame({"scan_id": SCANS, "label": LABELS})
SPLITS = pd.DataFrame({"scan_id": SCANS, "patient_id": [f"P{i // 2}" for i in range(10)]})
GOOD = [0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1, 0.55, 0.45]
CONFIG = GateConfig(bootstrap_samples=200, margin=0.02)


def _record(model_id: str, probabilities: list[float], scans: list[str] = SCANS) -> dict[str, Any]:
    return {"model_id": model_id,
            "test_predictions": dict(zip(scans, probabilities, strict=True))}


# --- the id --------------------------------------------------------------------------------

def _tables(weights: tuple[float, float] = (0.35, 0.96),
            card: dict[str, Any] | None = None) -> registry.RegistryTables:
    empty = pd.DataFrame()
    return registry.RegistryTables(
        runs=pd.DataFrame({"checkpoint_hash": ["b" * 64, "a" * 64]}),
        weights={"w_extreme": weights[0], "w_middle": weights[1]},
        infection=pd.DataFrame({"model_version": ["vbnet-1", "vbnet-1"]}),
        predict_segmenter=card or {}, splits=empty, scans=empty, predictions=empty,
        groups=empty, thresholds=None)


FINGERPRINTS = {"preprocess": "p1", "groups": "g1", "train": "t1", "ensemble": "ignored"}


def test_the_id_is_stable_and_names_what_makes_the_model() -> None:
    # Golden values: ids of existing data roots must not change.
    assert registry.model_id(_tables(), FINGERPRINTS) == "d48dd2ebaff21329"
    card = {"tag": "vbnet__x", "infection_threshold": 0.4}
    assert registry.model_id(_tables(card=card), FINGERPRINTS) == "9253a9dded789210"
    assert registry.model_id(_tables((0.3, 0.96)), FINGERPRINTS) != "d48dd2ebaff21329"
    # The ensemble's own settings are not part of the id (its weights are).
    assert registry.model_id(_tables(), {**FINGERPRINTS, "ensemble": "other"}) == \
        "d48dd2ebaff21329"


# --- the gate ------------------------------------------------------------------------------

def test_an_equal_challenger_passes() -> None:
    decision = registry.gate(_record("new", GOOD), _record("old", GOOD), GROUPS, SPLITS, CONFIG)
    assert decision.promote and decision.n_scans == 10


def test_a_better_challenger_passes() -> None:
    weak = list(GOOD)
    weak[0] = weak[1] = 0.2  # two COVID scans called CAP by the champion
    decision = registry.gate(_record("new", GOOD), _record("old", weak), GROUPS, SPLITS, CONFIG)
    assert decision.promote
    assert decision.numbers()["sensitivity"]["difference"] == pytest.approx(0.4)


def test_a_worse_challenger_is_rejected() -> None:
    worse = list(GOOD)
    worse[0] = worse[1] = 0.2
    decision = registry.gate(_record("new", worse), _record("old", GOOD), GROUPS, SPLITS, CONFIG)
    assert not decision.promote and "sensitivity (0.600 vs 1.000)" in decision.reason


def test_the_gate_aligns_on_the_champions_scans_by_id() -> None:
    # The challenger saw the champion's scans in another order, plus two new ones.
    order = SCANS[::-1] + ["N1", "N2"]
    probabilities = [*GOOD[::-1], 0.9, 0.1]
    inputs = registry.gate_inputs(_record("new", probabilities, order), _record("old", GOOD),
                                  GROUPS, SPLITS)
    assert inputs.scan_ids == tuple(SCANS)
    np.testing.assert_array_equal(inputs.challenger, GOOD)
    np.testing.assert_array_equal(inputs.y, [1, 1, 1, 1, 0, 0, 0, 0, 1, 0])
    assert inputs.patient_ids[-1] == "P4"


def test_models_without_shared_test_scans_are_refused() -> None:
    other = _record("new", GOOD, [f"T{i}" for i in range(10)])
    with pytest.raises(RegistryError, match="no prediction on the test scans"):
        registry.gate(other, _record("old", GOOD), GROUPS, SPLITS, CONFIG)


@pytest.mark.parametrize("table", ["groups", "splits"])
def test_a_shared_scan_without_label_or_patient_is_refused(table: str) -> None:
    groups = GROUPS[GROUPS["scan_id"] != "S3"] if table == "groups" else GROUPS
    splits = SPLITS[SPLITS["scan_id"] != "S3"] if table == "splits" else SPLITS
    with pytest.raises(RegistryError, match="first: scan S3"):
        registry.gate_inputs(_record("new", GOOD), _record("old", GOOD), groups, splits)


def test_the_new_test_scans_are_reported_apart() -> None:
    champion = _record("old", GOOD[:6], SCANS[:6])
    line = registry.new_test_summary(_record("new", GOOD), champion, GROUPS)
    assert line == "new test scans (not in the champion's test set): 4, AUC 1.000"
    assert registry.new_test_summary(champion, champion, GROUPS) == ""


# --- the life of a model -------------------------------------------------------------------

def test_the_first_model_is_promoted_and_a_passing_one_retires_it() -> None:
    first = registry.register({}, "A", promote=True)
    assert first == {"A": PROMOTED}
    second = registry.register(first, "B", promote=True)
    assert second == {"A": RETIRED, "B": PROMOTED}
    third = registry.register(second, "C", promote=False)
    assert third == {"A": RETIRED, "B": PROMOTED, "C": REJECTED}
    assert registry.champion(third) == "B"


def test_a_model_is_registered_once() -> None:
    with pytest.raises(RegistryError, match="registered already"):
        registry.register({"A": PROMOTED}, "A", promote=True)


def test_promoting_by_hand_retires_the_champion() -> None:
    statuses = {"A": RETIRED, "B": PROMOTED, "C": REJECTED}
    assert registry.promote_model(statuses, "C") == {"A": RETIRED, "B": RETIRED, "C": PROMOTED}
    assert registry.promote_model(statuses, "A") == {"A": PROMOTED, "B": RETIRED, "C": REJECTED}
    assert registry.promote_model(statuses, "B") == statuses  # already the champion
    with pytest.raises(RegistryError, match="no model 'D'"):
        registry.promote_model(statuses, "D")


def test_only_the_allowed_transitions_happen() -> None:
    for status, allowed in registry.TRANSITIONS.items():
        assert allowed <= set(registry.STATUSES) and status not in allowed
    with pytest.raises(RegistryError, match="more than|at most one"):
        registry.champion({"A": PROMOTED, "B": PROMOTED})
    with pytest.raises(RegistryError, match="cannot become promoted"):
        registry.promote_model({"A": "unknown-status"}, "A")


def test_rollback_returns_to_the_previous_champion() -> None:
    statuses = {"A": RETIRED, "B": PROMOTED, "C": REJECTED}
    current, earlier = registry.rollback_target(statuses, ["A", "B"])
    assert (current, earlier) == ("B", "A")
    assert registry.promote_model(statuses, earlier) == {"A": PROMOTED, "B": RETIRED,
                                                          "C": REJECTED}
    # After a promotion by hand (C) and its rollback, the previous one is B again.
    assert registry.rollback_target({"A": RETIRED, "B": RETIRED, "C": PROMOTED},
                                    ["A", "B", "C"]) == ("C", "B")


@pytest.mark.parametrize(("statuses", "promotions"), [
    ({}, []), ({"A": PROMOTED}, ["A"]), ({"A": RETIRED}, ["A"])])
def test_nothing_to_roll_back_to_is_refused(statuses: dict[str, str],
                                            promotions: list[str]) -> None:
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback_target(statuses, promotions)


def test_a_model_is_named_by_a_unique_prefix() -> None:
    known = ["abc123", "abd456", "f00000"]
    assert registry.resolve(known, "abc") == "abc123"
    with pytest.raises(RegistryError, match="found 2"):
        registry.resolve(known, "ab")
    with pytest.raises(RegistryError, match="found 0"):
        registry.resolve(known, "zz")


def test_the_decision_threshold_is_the_evaluations_else_the_configured_one() -> None:
    assert registry.decision_threshold(None, 0.5) == {"threshold": 0.5, "rule": "fixed",
                                                      "n_scans": 0}
    rows = pd.DataFrame({"model": ["att_ds", "att_ds", "att_us"], "fold": [0.0, None, None],
                         "threshold": [0.3, 0.42, 0.6], "rule": ["youden"] * 3,
                         "n_scans": [5, 20, 20]})
    assert registry.decision_threshold(rows, 0.5) == {"threshold": 0.42, "rule": "youden",
                                                      "n_scans": 20}
