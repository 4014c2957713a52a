from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dsan_core.classifier import ClassifierCase
from dsan_core.classifier.selection import inner_split, selection_split
from dsan_core.config import TrainConfig
from dsan_core.errors import ModelError


def _case(scan: str, patient: str, group: str) -> ClassifierCase:
    label = int(group.startswith("covid"))
    return ClassifierCase(scan, label, group, lambda: np.zeros(1), lambda: np.zeros(1),
                          patient_id=patient)


# 10 covid_small patients (p0-p9, two scans each for the even ones), 5 cap_small (q0-q4),
# 2 covid_large (r0, r1), 1 cap_large (s0).
CASES = ([_case(f"a{i}", f"p{i}", "covid_small") for i in range(10)]
         + [_case(f"b{i}", f"p{i}", "covid_small") for i in range(0, 10, 2)]
         + [_case(f"c{i}", f"q{i}", "cap_small") for i in range(5)]
         + [_case(f"d{i}", f"r{i}", "covid_large") for i in range(2)]
         + [_case("e0", "s0", "cap_large")])


def _patients(cases: tuple[ClassifierCase, ...]) -> set[str]:
    return {c.patient_id for c in cases}


def test_inner_split_holds_out_whole_patients_per_group() -> None:
    split = inner_split(CASES, 0.2, seed=3)
    assert not _patients(split.fit) & _patients(split.select)
    assert len(split.fit) + len(split.select) == len(CASES)
    held = {g: len({c.patient_id for c in split.select if c.sampling_group == g})
            for g in ("covid_small", "cap_small", "covid_large", "cap_large")}
    # round(0.2 x 10) = 2, round(0.2 x 5) = 1, at least one of 2, none of a lone patient.
    assert held == {"covid_small": 2, "cap_small": 1, "covid_large": 1, "cap_large": 0}
    # A patient's second scan goes with the first.
    for case in split.select:
        assert all(other in split.select for other in CASES
                   if other.patient_id == case.patient_id)


def test_inner_split_depends_on_the_seed_not_on_the_order() -> None:
    split = inner_split(CASES, 0.2, seed=3)
    shuffled = inner_split(CASES[::-1], 0.2, seed=3)
    assert {c.scan_id for c in split.select} == {c.scan_id for c in shuffled.select}
    seeds = {frozenset(c.scan_id for c in inner_split(CASES, 0.2, seed=s).select)
             for s in range(6)}
    assert len(seeds) > 1


def test_cases_without_patients_are_their_own_patients() -> None:
    alone = [dataclasses.replace(c, patient_id="") for c in CASES]
    split = inner_split(alone, 0.2, seed=0)
    # 15 covid_small scans -> 3 held out.
    assert sum(c.sampling_group == "covid_small" for c in split.select) == 3


def test_selection_rules() -> None:
    last = selection_split(CASES, TrainConfig(epoch_selection="last"), seed=0)
    assert last.fit == tuple(CASES) and last.select == ()
    inner = selection_split(CASES, TrainConfig(), seed=0)
    assert {c.label for c in inner.select} == {0, 1}
    with pytest.raises(ModelError, match="needs COVID and CAP"):
        selection_split([c for c in CASES if c.label == 1], TrainConfig(), seed=0)
    with pytest.raises(ModelError, match="fraction"):
        inner_split(CASES, 1.0, seed=0)
