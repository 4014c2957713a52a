"""CV folds inside TV: a fresh stratified group k-fold, or known patients kept in
place and new ones dealt to the fold with fewest patients of their stratum."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from dsan_core.errors import InputError
from dsan_core.splits.cohort import Cohort
from dsan_core.splits.policies import patient_keys
from dsan_core.splits.schema import TEST, TV, IntArray, require_columns


def stratified_group_folds(
    stratum: IntArray, size: IntArray, key: npt.NDArray[np.uint64], n_folds: int
) -> IntArray:
    """A fold in 0..n_folds-1 per group (patient), balanced per stratum, vectorised.

    Within each stratum groups are ordered by size (descending) then by `key`, and
    dealt out in a snake (0, 1, ..., k-1, k-1, ..., 0) so big groups spread evenly.
    Each stratum's deal is rotated so that the folds which get its leftover groups
    continue where the previous stratum's leftovers stopped: every fold's group
    count differs by at most one, per stratum and overall.
    """
    n = len(stratum)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((key, -size, stratum))
    sorted_stratum = stratum[order]
    starts = np.flatnonzero(np.r_[True, sorted_stratum[1:] != sorted_stratum[:-1]])
    lengths = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, lengths)
    block, within = np.divmod(rank, n_folds)
    snake = np.where(block % 2 == 0, within, n_folds - 1 - within)
    leftover = lengths % n_folds
    # The leftover (last, partial) block of a stratum covers folds [0, r) after an
    # even number of full blocks and [k - r, k) after an odd number.
    arc_start = np.where((lengths // n_folds) % 2 == 0, 0, n_folds - leftover)
    cursor = np.r_[0, np.cumsum(leftover)[:-1]] % n_folds
    rotation = (cursor - arc_start) % n_folds
    folds = np.empty(n, dtype=np.int64)
    folds[order] = (snake + np.repeat(rotation, lengths)) % n_folds
    return folds


def fresh_folds(cohort: Cohort, patient_in_test: npt.NDArray[np.bool_], n_folds: int,
                 seed: int) -> IntArray:
    """A fold per patient (-1 for test) by `stratified_group_folds`."""
    in_tv = ~patient_in_test
    folds = np.full(len(cohort.patients), -1, dtype=np.int64)
    keys = patient_keys(cohort.patients[in_tv], seed)
    folds[in_tv] = stratified_group_folds(cohort.stratum[in_tv], cohort.size[in_tv], keys,
                                          n_folds)
    return folds


def _previous_assignment(previous: pd.DataFrame, n_folds: int) -> pd.DataFrame:
    """patient_id -> set, fold (-1 for test) of an earlier split table; checks consistency."""
    require_columns(previous, ("scan_id", "patient_id", "set", "fold"), "previous")
    folds = previous["fold"].astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
    per_patient = pd.DataFrame({"patient_id": previous["patient_id"].to_numpy(),
                                "set": previous["set"].to_numpy(), "fold": folds,
                                "scan_id": previous["scan_id"].to_numpy()})
    bad = ~per_patient["set"].isin([TV, TEST]) | ((per_patient["set"] == TV) & (
        (per_patient["fold"] < 0) | (per_patient["fold"] >= n_folds)))
    if bad.any():
        row = per_patient[bad].iloc[0]
        raise InputError(
            f"previous split: expected set 'test' or set 'tv' with fold in 0..{n_folds - 1}, "
            f"found set {row['set']!r} fold {row['fold']}; use reshuffle=True to change n_folds",
            scan=str(row["scan_id"]), reason="bad_previous")
    unique = per_patient.drop_duplicates(["patient_id", "set", "fold"])
    clash = unique["patient_id"].duplicated()
    if clash.any():
        raise InputError("previous split: expected one set/fold per patient, found two",
                         scan=str(unique[clash]["scan_id"].iloc[0]), reason="bad_previous")
    return unique.set_index("patient_id")[["set", "fold"]]


def extend_folds(cohort: Cohort, patient_in_test: npt.NDArray[np.bool_],
                  previous: pd.DataFrame, n_folds: int, seed: int
                  ) -> tuple[npt.NDArray[np.bool_], IntArray, npt.NDArray[np.bool_]]:
    """Keep known patients' set and fold; place new TV patients greedily by stratum.

    Returns per patient: in test, fold (-1 for test), and whether it is new.
    """
    known = _previous_assignment(previous, n_folds).reindex(cohort.patients)
    is_known = known["set"].notna().to_numpy()
    in_test = patient_in_test.copy()
    in_test[is_known] = (known["set"].to_numpy() == TEST)[is_known]
    folds = np.full(len(cohort.patients), -1, dtype=np.int64)
    folds[is_known] = known["fold"].to_numpy()[is_known].astype(np.int64)

    stratum, size = cohort.stratum, cohort.size
    n_strata = int(stratum.max()) + 1 if len(stratum) else 1
    need = np.zeros((n_folds, n_strata), dtype=np.int64)
    scans_in = np.zeros(n_folds, dtype=np.int64)
    placed = is_known & ~in_test
    np.add.at(need, (folds[placed], stratum[placed]), 1)
    np.add.at(scans_in, folds[placed], size[placed])

    new_tv = np.flatnonzero(~is_known & ~in_test)
    keys = patient_keys(cohort.patients[new_tv], seed)
    for patient in new_tv[np.lexsort((keys, -size[new_tv]))]:
        s = stratum[patient]
        # Fewest patients of this stratum first, then fewest scans, then lowest fold.
        fold = int(np.lexsort((np.arange(n_folds), scans_in, need[:, s]))[0])
        folds[patient] = fold
        need[fold, s] += 1
        scans_in[fold] += size[patient]
    return in_test, folds, ~is_known
