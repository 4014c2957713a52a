from __future__ import annotations

import pytest

from dsan_core.segmentation.partition import HOLDOUT, TRAIN, VAL, partition_cases


def test_fractions_and_stability_when_scans_are_added() -> None:
    ids = [f"X-{i:04d}" for i in range(200)]
    first = partition_cases(ids, val_fraction=0.2, holdout_fraction=0.2, seed=7)
    counts = {name: list(first.values()).count(name) for name in (TRAIN, VAL, HOLDOUT)}
    assert 20 <= counts[HOLDOUT] <= 60 and 15 <= counts[VAL] <= 50
    more = partition_cases(ids + [f"Y-{i}" for i in range(50)], val_fraction=0.2,
                           holdout_fraction=0.2, seed=7)
    assert all(more[s] == first[s] for s in ids)


@pytest.mark.parametrize("n", [3, 4, 5])
def test_small_sets_get_every_partition(n: int) -> None:
    out = partition_cases([f"s{i}" for i in range(n)], val_fraction=0.2, holdout_fraction=0.2,
                          seed=1)
    assert set(out.values()) == {TRAIN, VAL, HOLDOUT}


def test_no_holdout_when_fraction_is_zero() -> None:
    out = partition_cases([f"s{i}" for i in range(10)], val_fraction=0.3, holdout_fraction=0.0,
                          seed=1)
    assert HOLDOUT not in out.values()


def test_validation_cap_moves_the_extra_cases_to_training() -> None:
    ids = [f"s{i}" for i in range(100)]
    free = partition_cases(ids, val_fraction=0.3, holdout_fraction=0.2, seed=3)
    capped = partition_cases(ids, val_fraction=0.3, holdout_fraction=0.2, seed=3, max_val=4)
    assert list(capped.values()).count(VAL) == 4
    assert {s for s in ids if free[s] == HOLDOUT} == {s for s in ids if capped[s] == HOLDOUT}


def test_a_patients_scans_share_one_partition_and_stay_there() -> None:
    scans = [f"X-{i:03d}" for i in range(120)]
    patients = {scan: f"P-{i // 3:03d}" for i, scan in enumerate(scans)}  # 3 scans each
    out = partition_cases(scans, val_fraction=0.2, holdout_fraction=0.2, seed=7,
                          patients=patients)
    for patient in set(patients.values()):
        assert len({out[s] for s, p in patients.items() if p == patient}) == 1
    assert 12 <= sum(v == HOLDOUT for v in out.values()) <= 45
    # New scans of a known patient join its partition; known scans never move.
    grown = {**patients, "X-900": "P-000", "X-901": "P-999"}
    again = partition_cases(list(grown), val_fraction=0.2, holdout_fraction=0.2, seed=7,
                            patients=grown)
    assert all(again[s] == out[s] for s in scans)
    assert again["X-900"] == out["X-000"]


def test_the_validation_cap_moves_whole_patients() -> None:
    scans = [f"X-{i:03d}" for i in range(60)]
    patients = {scan: f"P-{i // 2:03d}" for i, scan in enumerate(scans)}
    out = partition_cases(scans, val_fraction=0.4, holdout_fraction=0.1, seed=3, max_val=5,
                          patients=patients)
    val = [s for s in scans if out[s] == VAL]
    assert len(val) == 4  # two patients of two scans; a third would pass the cap
    assert {patients[s] for s in val} == {patients[s] for s in scans if out[s] == VAL}
