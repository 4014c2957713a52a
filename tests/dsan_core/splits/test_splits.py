from __future__ import annotations

import io
from datetime import date

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dsan_core.config import SplitConfig
from dsan_core.errors import InputError
from dsan_core.splits import (
    assign_test_set,
    make_splits,
    split_version,
    stratified_group_folds,
)
from tests.dsan_core.splits.split_cohort import make_cohort

DATE = SplitConfig(policy="date", cutoff_date=date(2020, 1, 31))


def test_stratified_group_folds_snake_by_hand() -> None:
    # One stratum, sizes 5 4 3 2 1 1 dealt 0 1 2 | 2 1 0 -> scan totals 6 5 5.
    folds = stratified_group_folds(np.zeros(6, dtype=np.int64), np.array([5, 4, 3, 2, 1, 1]),
                                   np.arange(6, dtype=np.uint64), 3)
    assert folds.tolist() == [0, 1, 2, 2, 1, 0]


@pytest.mark.parametrize(("n_folds", "strata_sizes"),
                         [(3, (7, 3)), (5, (11, 4, 9, 1)), (5, (2, 2, 2, 2, 2)), (4, (40, 13))])
def test_stratified_group_folds_balance(n_folds: int, strata_sizes: tuple[int, ...]) -> None:
    stratum = np.repeat(np.arange(len(strata_sizes)), strata_sizes).astype(np.int64)
    size = (np.arange(len(stratum)) % 3 + 1).astype(np.int64)
    key = np.arange(len(stratum), dtype=np.uint64)[::-1].copy()
    folds = stratified_group_folds(stratum, size, key, n_folds)
    assert folds.min() >= 0 and folds.max() < n_folds
    overall = np.bincount(folds, minlength=n_folds)
    assert overall.max() - overall.min() <= 1
    for s in range(len(strata_sizes)):
        per_fold = np.bincount(folds[stratum == s], minlength=n_folds)
        assert per_fold.max() - per_fold.min() <= 1


def _fold_spread(table: pd.DataFrame, strata: pd.Series) -> tuple[int, int]:
    tv = table[table["set"] == "tv"]
    scans_per_fold = tv["fold"].value_counts()
    per_stratum = pd.crosstab(strata.reindex(tv["scan_id"]).to_numpy(), tv["fold"].to_numpy())
    return (int(scans_per_fold.max() - scans_per_fold.min()),
            int((per_stratum.max(axis=1) - per_stratum.min(axis=1)).max()))


def test_balance_comparable_to_sklearn() -> None:
    sklearn = pytest.importorskip("sklearn.model_selection")
    scans, groups = make_cohort(150)
    config = SplitConfig(policy="random", test_fraction=0.2, seed=4)
    table = make_splits(scans, groups, config).table
    strata = pd.Series(scans["label"].to_numpy() + "|" + groups["analysis_bin"].to_numpy(),
                       index=scans["scan_id"])
    ours = _fold_spread(table, strata)
    tv_ids = table.loc[table["set"] == "tv", "scan_id"]
    tv = scans.set_index("scan_id").loc[tv_ids]
    reference = table[table["set"] == "tv"].copy()
    splitter = sklearn.StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    for fold, (_, val) in enumerate(splitter.split(tv, strata.loc[tv_ids], tv["patient_id"])):
        reference.iloc[val, reference.columns.get_loc("fold")] = fold
    theirs = _fold_spread(reference, strata)
    assert ours[0] <= max(theirs[0], 3)
    assert ours[1] <= max(theirs[1], 3)


def test_date_policy_is_patient_level() -> None:
    scans, _ = make_cohort(40)
    sets = assign_test_set(scans, DATE)
    dates = scans["acquisition_date"]
    assert (sets[dates >= pd.Timestamp(2020, 1, 31)] == "test").all()
    # p0030 has scans on Jan 31 and Feb 1 -> test; p0029 (one scan on Jan 30) stays tv.
    assert set(sets[scans["patient_id"] == "p0030"]) == {"test"}
    assert set(sets[scans["patient_id"] == "p0029"]) == {"tv"}
    # A patient straddling the cutoff goes to test with all its scans.
    straddle = scans.copy()
    straddle.loc[straddle["scan_id"] == "s00300", "acquisition_date"] = pd.Timestamp(2020, 1, 5)
    sets = assign_test_set(straddle, DATE)
    assert set(sets[straddle["patient_id"] == "p0030"]) == {"test"}


def test_site_policy() -> None:
    scans, _ = make_cohort(12)
    sets = assign_test_set(scans, SplitConfig(policy="site", test_sites=("site-b",)))
    assert (sets == "test").tolist() == (scans["site"] == "site-b").tolist()
    with pytest.raises(InputError, match="site-z"):
        assign_test_set(scans, SplitConfig(policy="site", test_sites=("site-z",)))


def test_column_policy_and_bad_values() -> None:
    scans, _ = make_cohort(12)
    config = SplitConfig(policy="column", assignment_column="label_split")
    sets = assign_test_set(scans, config)
    assert sets.tolist() == scans["label_split"].tolist()
    bad = scans.copy()
    bad.loc[3, "label_split"] = "train"
    with pytest.raises(InputError, match="'train'") as error:
        assign_test_set(bad, config)
    assert error.value.scan == bad.loc[3, "scan_id"]
    assert bad.loc[3, "patient_id"] not in str(error.value)
    bad.loc[3, "label_split"] = None
    with pytest.raises(InputError):
        assign_test_set(bad, config)


@pytest.mark.parametrize(("fraction", "n_patients"), [(0.25, 40), (0.5, 12), (0.3, 33)])
def test_random_policy_fraction_and_seed(fraction: float, n_patients: int) -> None:
    scans, _ = make_cohort(n_patients)
    config = SplitConfig(policy="random", test_fraction=fraction, seed=9)
    sets = assign_test_set(scans, config)
    test_patients = scans.loc[sets == "test", "patient_id"].unique()
    assert len(test_patients) == round(fraction * n_patients)
    assert (sets.groupby(scans["patient_id"]).nunique() == 1).all()
    assert sets.equals(assign_test_set(scans, config))
    other = assign_test_set(scans, config.model_copy(update={"seed": 10}))
    assert not sets.equals(other)


def test_make_splits_patient_level_and_sorted() -> None:
    scans, groups = make_cohort(60)
    result = make_splits(scans, groups, DATE)
    table = result.table
    assert list(table.columns) == ["scan_id", "patient_id", "set", "fold", "policy", "seed",
                                   "split_version"]
    assert table["scan_id"].is_monotonic_increasing and len(table) == len(scans)
    assert (table.groupby("patient_id")[["set", "fold"]].nunique(dropna=False) == 1).all().all()
    assert table.loc[table["set"] == "test", "fold"].isna().all()
    assert table.loc[table["set"] == "tv", "fold"].between(0, 4).all()
    assert str(table["fold"].dtype) == "Int8"
    assert (table["split_version"] == result.version).all()
    assert result.version == split_version(table["scan_id"], table["set"], table["fold"])
    assert len(result.new_patients) == 60 and not result.reshuffled


def test_make_splits_is_deterministic_and_row_order_free(tmp_path: object) -> None:
    scans, groups = make_cohort(50)
    first = make_splits(scans, groups, DATE).table
    shuffled = make_splits(scans.sample(frac=1.0, random_state=1),
                           groups.sample(frac=1.0, random_state=2), DATE).table

    def parquet_bytes(table: pd.DataFrame) -> bytes:
        buffer = io.BytesIO()
        table.to_parquet(buffer, engine="pyarrow", index=False)
        return buffer.getvalue()

    assert parquet_bytes(first) == parquet_bytes(shuffled)
    assert pq.read_table(io.BytesIO(parquet_bytes(first))).num_rows == len(scans)


def test_seed_changes_folds() -> None:
    scans, groups = make_cohort(50)
    a = make_splits(scans, groups, DATE).table
    b = make_splits(scans, groups, DATE.model_copy(update={"seed": 1})).table
    assert a["split_version"].iloc[0] != b["split_version"].iloc[0]
    assert a["set"].equals(b["set"])


def test_retrain_with_new_patients_moves_nobody() -> None:
    scans, groups = make_cohort(60)
    previous = make_splits(scans, groups, DATE).table
    new_scans, new_groups = make_cohort(10, first=200)
    # A new scan of a known (TV) patient, acquired after the cutoff: it inherits tv.
    known = previous.loc[previous["set"] == "tv"].iloc[0]
    extra = scans[scans["scan_id"] == known["scan_id"]].assign(
        scan_id="s9999", acquisition_date=pd.Timestamp(2020, 6, 1))
    extra_group = groups[groups["scan_id"] == known["scan_id"]].assign(scan_id="s9999")
    all_scans = pd.concat([scans, new_scans, extra], ignore_index=True)
    all_groups = pd.concat([groups, new_groups, extra_group], ignore_index=True)
    result = make_splits(all_scans, all_groups, DATE, previous=previous)
    table = result.table.set_index("scan_id")
    old = previous.set_index("scan_id")
    pd.testing.assert_frame_equal(table.loc[old.index, ["set", "fold"]], old[["set", "fold"]])
    assert table.loc["s9999", "set"] == "tv" and table.loc["s9999", "fold"] == known["fold"]
    assert result.new_patients == tuple(f"p{i:04d}" for i in range(200, 210))
    patients_per_fold = result.table[result.table["set"] == "tv"].drop_duplicates(
        "patient_id")["fold"].value_counts()
    assert patients_per_fold.max() - patients_per_fold.min() <= 2
    assert result.version != previous["split_version"].iloc[0] and not result.reshuffled


def test_retrain_without_new_data_keeps_the_version() -> None:
    scans, groups = make_cohort(30)
    previous = make_splits(scans, groups, DATE)
    again = make_splits(scans, groups, DATE, previous=previous.table)
    assert again.version == previous.version and again.new_patients == ()


def test_reshuffle_changes_the_version() -> None:
    scans, groups = make_cohort(60)
    previous = make_splits(scans, groups, DATE)
    shuffled = make_splits(scans, groups, DATE, previous=previous.table, reshuffle=True)
    assert shuffled.reshuffled and shuffled.version != previous.version
    assert shuffled.table["set"].equals(previous.table["set"])  # the date policy still decides
    assert shuffled.table["seed"].iloc[0] != DATE.seed


def test_previous_with_more_folds_needs_a_reshuffle() -> None:
    scans, groups = make_cohort(30)
    previous = make_splits(scans, groups, DATE.model_copy(update={"n_folds": 6})).table
    previous.loc[previous["set"] == "tv", "fold"] = 5
    with pytest.raises(InputError, match="reshuffle"):
        make_splits(scans, groups, DATE, previous=previous)


@pytest.mark.parametrize("problem", ["duplicate", "missing_group", "bad_label", "no_patient"])
def test_bad_inputs_name_the_scan(problem: str) -> None:
    scans, groups = make_cohort(8)
    if problem == "duplicate":
        scans.loc[2, "scan_id"] = scans.loc[1, "scan_id"]
    elif problem == "missing_group":
        groups = groups[groups["scan_id"] != "s00050"]
    elif problem == "bad_label":
        scans.loc[4, "label"] = "flu"
    else:
        scans.loc[5, "patient_id"] = None
    with pytest.raises(InputError) as error:
        make_splits(scans, groups, DATE)
    assert error.value.scan is not None and error.value.scan.startswith("s")


def test_fold_scans_by_hand() -> None:
    from dsan_core.splits import fold_scans

    splits = pd.DataFrame({"scan_id": ["a", "b", "c", "d", "e"],
                           "set": ["tv", "tv", "tv", "test", "tv"],
                           "fold": pd.array([0, 1, 0, None, 1], dtype="Int8")})
    zero = fold_scans(splits, 0)
    assert (zero.train, zero.val, zero.test) == (("b", "e"), ("a", "c"), ("d",))
    with pytest.raises(InputError, match=r"expected fold 2 in the split, found folds \[0, 1\]"):
        fold_scans(splits, 2)
