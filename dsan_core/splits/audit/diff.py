"""Differences between two split tables: who moved, who is new, who disappeared.

A patient's assignment is "test" or "fold i" (when, wrongly, its scans sit in
several partitions: the lowest and highest, e.g. "fold 0; test"). "moved" lists
patients present in both splits whose assignment changed; "new" and "disappeared"
are patients present in one only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dsan_core.splits.ids import arrow_strings, factorize_ids, match_positions
from dsan_core.splits.schema import require_columns

MOVED_COLUMNS = ("patient_id", "old_assignment", "new_assignment")
_TEST_CODE = 1_000
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SplitDiff:
    """Patient-level differences of the current split against an earlier one."""

    old_version: str | None
    new_version: str | None
    moved: pd.DataFrame
    new_patients: tuple[str, ...]
    disappeared_patients: tuple[str, ...]
    new_scans: int
    disappeared_scans: int

    def summary(self) -> dict[str, object]:
        return {
            "old_version": self.old_version,
            "new_version": self.new_version,
            "moved_patients": len(self.moved),
            "new_patients": len(self.new_patients),
            "disappeared_patients": len(self.disappeared_patients),
            "new_scans": self.new_scans,
            "disappeared_scans": self.disappeared_scans,
        }


def _version(table: pd.DataFrame) -> str | None:
    if "split_version" in table.columns and len(table):
        return str(table["split_version"].iloc[0])
    return None


def _assignment_name(code: int) -> str:
    return "test" if code == _TEST_CODE else f"fold {code}"


def _assignments(table: pd.DataFrame) -> tuple[pa.Array, IntArray, IntArray]:
    """Unique patient ids with the lowest and highest assignment code of their scans."""
    require_columns(table, ("scan_id", "patient_id", "set", "fold"), "splits")
    is_test = (table["set"] == "test").to_numpy(dtype=bool, na_value=False)
    folds = table["fold"].astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
    code = np.where(is_test, _TEST_CODE, folds)
    ids = arrow_strings(table["patient_id"])
    if isinstance(table["patient_id"].dtype, pd.StringDtype) and not ids.null_count:
        indices, firsts = factorize_ids(table["patient_id"])
        dictionary = ids.take(pa.array(firsts))
    else:
        encoded = pc.dictionary_encode(ids)
        indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        dictionary = encoded.dictionary
    n = len(dictionary)
    low = np.full(n, _TEST_CODE + 1, dtype=np.int64)
    high = np.full(n, -2, dtype=np.int64)
    np.minimum.at(low, indices, code)
    np.maximum.at(high, indices, code)
    return dictionary, low, high


def diff_splits(current: pd.DataFrame, earlier: pd.DataFrame) -> SplitDiff:
    """Compare `current` against `earlier` (both split tables)."""
    patients, low, high = _assignments(current)
    old_patients, old_low, old_high = _assignments(earlier)
    match = match_positions(old_patients, patients)
    both = match >= 0
    safe = np.maximum(match, 0)
    changed = np.flatnonzero(both & ((low != old_low[safe]) | (high != old_high[safe])))
    matched = np.zeros(len(old_patients), dtype=bool)
    matched[match[both]] = True

    def name(lo: int, hi: int) -> str:
        first = _assignment_name(lo)
        return first if lo == hi else f"{first}; {_assignment_name(hi)}"

    moved = pd.DataFrame({
        "patient_id": patients.take(pa.array(changed)).to_pylist(),
        "old_assignment": [name(old_low[safe[i]], old_high[safe[i]]) for i in changed],
        "new_assignment": [name(low[i], high[i]) for i in changed],
    }, columns=list(MOVED_COLUMNS))
    scans = arrow_strings(current["scan_id"])
    old_scans = arrow_strings(earlier["scan_id"])
    return SplitDiff(
        old_version=_version(earlier),
        new_version=_version(current),
        moved=moved.sort_values("patient_id", ignore_index=True),
        new_patients=tuple(sorted(patients.filter(pa.array(~both)).to_pylist())),
        disappeared_patients=tuple(sorted(old_patients.filter(pa.array(~matched)).to_pylist())),
        new_scans=int((match_positions(old_scans, scans) < 0).sum()),
        disappeared_scans=int((match_positions(scans, old_scans) < 0).sum()),
    )
