"""`make_splits`: the split table (test set + folds) and its content version."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dsan_core.config import SplitConfig
from dsan_core.splits.cohort import prepare_cohort
from dsan_core.splits.folds import extend_folds, fresh_folds
from dsan_core.splits.ids import arrow_strings, sorted_positions
from dsan_core.splits.policies import POLICIES
from dsan_core.splits.schema import TEST, TV


@dataclass(frozen=True)
class SplitResult:
    """A split table with its version; `new_patients` were placed by this call."""

    table: pd.DataFrame
    version: str
    new_patients: tuple[str, ...]
    reshuffled: bool


def split_version(scan_ids: pd.Series, sets: pd.Series, folds: pd.Series) -> str:
    """sha256 of the lines "scan_id<TAB>set<TAB>fold<LF>" in scan_id order (fold "" for test)."""
    ids = arrow_strings(scan_ids)
    fold_text = pc.fill_null(pa.array(folds.astype("Int64"), from_pandas=True)
                             .cast(pa.large_string()), "")
    columns = [ids, arrow_strings(sets), fold_text]
    order = sorted_positions(ids)
    if not np.array_equal(order, np.arange(len(order))):
        columns = [column.take(pa.array(order)) for column in columns]
    tab, newline = pa.scalar("\t", pa.large_string()), pa.scalar("\n", pa.large_string())
    lines = pc.binary_join_element_wise(*columns, tab)
    lines = pc.binary_join_element_wise(lines, pa.scalar("", pa.large_string()), newline)
    digest = hashlib.sha256()
    if len(lines):
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
        first, last = offsets[lines.offset], offsets[lines.offset + len(lines)]
        digest.update(memoryview(lines.buffers()[2])[first:last])
    return digest.hexdigest()


def _reshuffle_seed(seed: int, previous: pd.DataFrame) -> int:
    if "split_version" in previous.columns and len(previous):
        tag = str(previous["split_version"].iloc[0])
    else:
        tag = split_version(previous["scan_id"], previous["set"], previous["fold"])
    digest = hashlib.sha256(f"dsan-reshuffle:{seed}:{tag}".encode()).hexdigest()
    return int(digest[:8], 16)


def make_splits(scans: pd.DataFrame, groups: pd.DataFrame, config: SplitConfig, *,
                previous: pd.DataFrame | None = None, reshuffle: bool = False) -> SplitResult:
    """Assign every scan to test or to one of `config.n_folds` TV folds, per patient.

    With `previous`, known patients keep their set and fold and their new scans
    inherit it; only new patients are placed. `reshuffle=True` ignores the previous
    assignment and redraws everything with a seed derived from (config.seed, previous
    version), so the result is a new version. `new_patients` are the patients this
    call placed (all of them without `previous`), in order of their first scan id.
    """
    seed = config.seed
    reshuffled = previous is not None and reshuffle
    if reshuffled and previous is not None:
        seed = _reshuffle_seed(config.seed, previous)
    cohort = prepare_cohort(scans, groups)
    scan_in_test = POLICIES[config.policy](scans, config.model_copy(update={"seed": seed}))
    weights = scan_in_test[cohort.order].astype(np.float64)
    patient_in_test = np.bincount(cohort.patient_codes, weights=weights,
                                  minlength=len(cohort.patients)) > 0
    if previous is None or reshuffle:
        folds = fresh_folds(cohort, patient_in_test, config.n_folds, seed)
        is_new = np.ones(len(cohort.patients), dtype=bool)
    else:
        patient_in_test, folds, is_new = extend_folds(cohort, patient_in_test, previous,
                                                       config.n_folds, seed)
    row_test = patient_in_test[cohort.patient_codes]
    row_fold = folds[cohort.patient_codes]
    set_names = pa.array([TV, TEST], type=pa.large_string())
    sets = set_names.take(pa.array(row_test.astype(np.int8)))
    table = pd.DataFrame({
        "scan_id": cohort.scan_ids,
        "patient_id": cohort.patient_ids,
        "set": pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([sets]))).astype("str"),
        "fold": pd.arrays.IntegerArray(np.maximum(row_fold, 0).astype(np.int8), row_fold < 0),
    })
    version = split_version(table["scan_id"], table["set"], table["fold"])
    table["policy"] = config.policy
    table["seed"] = np.int64(seed)
    table["split_version"] = version
    new_patients = tuple(map(str, cohort.patients[is_new]))
    return SplitResult(table=table, version=version, new_patients=new_patients,
                       reshuffled=reshuffled)


def unseen_patients(result: SplitResult, previous: pd.DataFrame | None) -> int:
    """Patients of `result` absent from the `previous` split (a reshuffle re-places
    everyone, but only these are new to the data)."""
    if previous is None or not result.reshuffled:
        return len(result.new_patients)
    known = set(previous["patient_id"].unique().tolist())
    return sum(patient not in known for patient in result.table["patient_id"].unique())
