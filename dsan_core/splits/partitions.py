"""Partitions of a split: "fold 0" .. "fold k-1" and "test", as codes 0..k and names."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from dsan_core.errors import InputError
from dsan_core.splits.schema import TEST, TV


def partition_names(n_folds: int) -> list[str]:
    """Names of partition codes 0..k: "fold 0" .. "fold k-1", "test"."""
    return [f"fold {fold}" for fold in range(n_folds)] + ["test"]


def partition_codes(splits: pd.DataFrame, n_folds: int) -> npt.NDArray[np.int64]:
    """Partition code per split row (fold i -> i, test -> k); checks set and fold values."""
    is_test = (splits["set"] == TEST).to_numpy(dtype=bool, na_value=False)
    is_tv = (splits["set"] == TV).to_numpy(dtype=bool, na_value=False)
    folds = splits["fold"].astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
    bad = ~(is_test | is_tv) | (is_tv & ((folds < 0) | (folds >= n_folds)))
    bad |= is_test & (folds >= 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"splits: expected set 'test' with no fold or set 'tv' with fold 0..{n_folds - 1}, "
            f"found set {splits['set'].iloc[row]!r} fold {folds[row] if folds[row] >= 0 else None}",
            scan=str(splits["scan_id"].iloc[row]), reason="bad_split")
    partition: npt.NDArray[np.int64] = np.where(is_test, n_folds, folds)
    return partition


def partition_counts(splits: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Partition name -> (scans, patients) of a split table, in name order."""
    names = splits["fold"].astype("Int64").map(lambda f: TEST if pd.isna(f) else f"fold {f}")
    grouped = splits.assign(partition=names.to_numpy()).groupby("partition", sort=True)
    return {str(name): (int(len(part)), int(part["patient_id"].nunique()))
            for name, part in grouped}


@dataclass(frozen=True)
class FoldScans:
    """The scans one fold's models see: train (TV minus the fold), val (the fold) and the
    independent test set; each sorted by scan id."""

    fold: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]


def fold_scans(splits: pd.DataFrame, fold: int) -> FoldScans:
    """`FoldScans` of `fold` in a split table (scan_id, set, fold)."""
    folds = splits["fold"].astype("Int64")
    tv = (splits["set"] == TV).to_numpy(dtype=bool)
    in_fold = (folds == fold).fillna(False).to_numpy(dtype=bool)
    if not (tv & in_fold).any():
        found = sorted(int(f) for f in folds[tv].dropna().unique())
        raise InputError(f"expected fold {fold} in the split, found folds {found}")
    ids = splits["scan_id"].astype(str).to_numpy()
    return FoldScans(fold, tuple(sorted(ids[tv & ~in_fold])), tuple(sorted(ids[tv & in_fold])),
                     tuple(sorted(ids[(splits["set"] == TEST).to_numpy(dtype=bool)])))
