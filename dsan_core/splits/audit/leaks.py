"""Leak checks of a split: one identity in two partitions (folds or test).

A partition is a TV fold (codes 0..k-1) or the test set (code k). An identity is
a patient, a study, a series or a volume content hash; the same identity in two
partitions means validation or test data was seen in training. Identities shared
by several patients (a study or volume under two patient ids) are reported
separately, because they usually mean a pseudonymisation or export error.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pandas as pd

#: (kind, column) of the identities that must not cross partitions.
LEAK_KEYS: tuple[tuple[str, str], ...] = (
    ("patient", "patient_id"),
    ("study", "study_id"),
    ("series", "series_id"),
    ("volume", "volume_hash"),
)
LEAK_COLUMNS = ("kind", "key", "partitions", "n_scans", "scan_ids", "patient_ids")
SHARED_COLUMNS = ("kind", "key", "n_patients", "patient_ids", "scan_ids")
Codes = Mapping[str, tuple[npt.NDArray[np.intp], int]]


def factorize_identities(work: pd.DataFrame) -> dict[str, tuple[npt.NDArray[np.intp], int]]:
    """Integer codes (-1 for missing) and number of distinct values of each identity column."""
    coded = {}
    for _, column in LEAK_KEYS:
        if column in work.columns:
            codes, uniques = pd.factorize(work[column])
            coded[column] = (codes, len(uniques))
    return coded


def _joined(values: pd.Series) -> str:
    return "; ".join(sorted({str(value) for value in values}))


def _keys_with_many(codes: npt.NDArray[np.intp], other: npt.NDArray[np.int64], n_other: int,
                    n_keys: int) -> npt.NDArray[np.intp]:
    """Codes of the keys that occur with more than one distinct `other` value (>= 0)."""
    valid = (codes >= 0) & (other >= 0)
    keys, values = codes[valid], other[valid]
    low = np.full(n_keys, n_other, dtype=np.int64)
    high = np.full(n_keys, -1, dtype=np.int64)
    np.minimum.at(low, keys, values)
    np.maximum.at(high, keys, values)
    return np.flatnonzero(high > low)


def rows_to_describe(coded: Codes, partition: npt.NDArray[np.int64], n_partitions: int
                     ) -> npt.NDArray[np.bool_]:
    """Rows whose identity is in several partitions or, for studies, series and volumes,
    under several patient codes.

    These rows hold every identity that `find_leaks` or `find_shared_identities`
    reports, with all of its rows, so both give the same answer on these rows alone:
    a caller needs the id strings of these rows only.
    """
    rows = np.zeros(len(partition), dtype=bool)
    patient_codes, n_patients = coded.get("patient_id", (None, 0))
    for kind, column in LEAK_KEYS:
        if column not in coded:
            continue
        codes, n_keys = coded[column]
        flagged = np.zeros(n_keys + 1, dtype=bool)  # the extra slot takes code -1
        flagged[_keys_with_many(codes, partition, n_partitions, n_keys)] = True
        if kind != "patient" and patient_codes is not None:
            flagged[_keys_with_many(codes, patient_codes.astype(np.int64), max(n_patients, 1),
                                    n_keys)] = True
        flagged[-1] = False
        rows |= flagged[codes]
    return rows


def _describe(work: pd.DataFrame, column: str, codes: npt.NDArray[np.intp],
              keys: npt.NDArray[np.intp], extra: dict[str, npt.NDArray[np.object_]]
              ) -> pd.DataFrame:
    rows = np.isin(codes, keys)
    subset = pd.DataFrame({"key": work[column].to_numpy()[rows],
                           "scan_id": work["scan_id"].to_numpy()[rows],
                           "patient_id": work["patient_id"].to_numpy()[rows]})
    for name, values in extra.items():
        subset[name] = values[rows]
    grouped = subset.groupby("key", sort=True)
    out = pd.DataFrame({
        "n_scans": grouped.size(),
        "scan_ids": grouped["scan_id"].agg(_joined),
        "patient_ids": grouped["patient_id"].agg(_joined),
        "n_patients": grouped["patient_id"].nunique(),
    })
    for name in extra:
        out[name] = grouped[name].agg(_joined)
    return out.reset_index()


def find_leaks(work: pd.DataFrame, partition: npt.NDArray[np.int64],
               partition_names: list[str], coded: Codes | None = None) -> pd.DataFrame:
    """One row per identity found in more than one partition (columns `LEAK_COLUMNS`).

    `work` has scan_id, patient_id and any of study_id, series_id, volume_hash, one
    row per scan; `partition[i]` indexes `partition_names` for row i. `coded` is
    `factorize_identities(work)` when the caller already has it.
    """
    coded = factorize_identities(work) if coded is None else coded
    names = np.asarray(partition_names, dtype=object)
    found = []
    for kind, column in LEAK_KEYS:
        if column not in coded:
            continue
        codes, n_keys = coded[column]
        leaking = _keys_with_many(codes, partition, len(partition_names), n_keys)
        if leaking.size:
            described = _describe(work, column, codes, leaking, {"partitions": names[partition]})
            described.insert(0, "kind", kind)
            found.append(described[list(LEAK_COLUMNS)])
    if not found:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in LEAK_COLUMNS})
    return pd.concat(found, ignore_index=True)


def find_shared_identities(work: pd.DataFrame, coded: Codes | None = None) -> pd.DataFrame:
    """Studies, series or volumes that occur under more than one patient id."""
    coded = factorize_identities(work) if coded is None else coded
    patient_codes, n_patients = coded["patient_id"]
    found = []
    for kind, column in LEAK_KEYS[1:]:
        if column not in coded:
            continue
        codes, n_keys = coded[column]
        shared = _keys_with_many(codes, patient_codes.astype(np.int64), max(n_patients, 1),
                                 n_keys)
        if shared.size:
            described = _describe(work, column, codes, shared, {})
            described.insert(0, "kind", kind)
            found.append(described[list(SHARED_COLUMNS)])
    if not found:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in SHARED_COLUMNS})
    return pd.concat(found, ignore_index=True)
