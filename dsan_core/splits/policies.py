"""Test-set policies: which patients form the independent test set (date, site,
labels column, or a seeded random fraction). A patient is in test when any of its
scans is."""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt
import pandas as pd

from dsan_core.config import SplitConfig
from dsan_core.errors import InputError
from dsan_core.splits.schema import LABEL_SPLIT_COLUMN, TEST, TV, require_columns


def _first_scan(scans: pd.DataFrame, bad: npt.NDArray[np.bool_]) -> str:
    return str(scans["scan_id"].to_numpy()[np.flatnonzero(bad)[0]])


def _test_by_date(scans: pd.DataFrame, config: SplitConfig) -> npt.NDArray[np.bool_]:
    require_columns(scans, ("acquisition_date",), "scans")
    dates = pd.to_datetime(scans["acquisition_date"], errors="coerce")
    missing = dates.isna().to_numpy()
    if missing.any():
        raise InputError(
            "policy 'date' needs an acquisition date for every scan; found none "
            f"or an unreadable one for {int(missing.sum())} scan(s)",
            scan=_first_scan(scans, missing),
            reason="missing_date",
        )
    if config.cutoff_date is None:  # SplitConfig already refuses this for policy "date"
        raise InputError("policy 'date' needs cutoff_date, found none", reason="config")
    return (dates >= pd.Timestamp(config.cutoff_date)).to_numpy()


def _test_by_site(scans: pd.DataFrame, config: SplitConfig) -> npt.NDArray[np.bool_]:
    require_columns(scans, ("site",), "scans")
    sites = scans["site"]
    missing = sites.isna().to_numpy()
    if missing.any():
        raise InputError(
            "policy 'site' needs a site for every scan; found none",
            scan=_first_scan(scans, missing),
            reason="missing_site",
        )
    present = set(sites.unique().tolist())
    absent = sorted(set(config.test_sites) - present)
    if absent:
        raise InputError(
            f"policy 'site': test sites {absent} do not occur; sites found: {sorted(present)}",
            reason="unknown_site",
        )
    return sites.isin(list(config.test_sites)).to_numpy()


def _test_by_column(scans: pd.DataFrame, config: SplitConfig) -> npt.NDArray[np.bool_]:
    column = config.assignment_column
    if column not in scans.columns:
        column = LABEL_SPLIT_COLUMN
    require_columns(scans, (column,), "scans")
    values = scans[column].astype("string").str.strip().str.lower()
    bad = (~values.isin([TV, TEST])).fillna(True).to_numpy(dtype=bool)
    if bad.any():
        found = scans[column].to_numpy()[np.flatnonzero(bad)[0]]
        raise InputError(
            f"policy 'column': expected {TV!r} or {TEST!r} in column {column!r}, found {found!r}",
            scan=_first_scan(scans, bad),
            reason="bad_assignment",
        )
    return (values == TEST).to_numpy(dtype=bool)


def patient_keys(patient_ids: npt.NDArray[np.object_], seed: int) -> npt.NDArray[np.uint64]:
    """A seeded pseudo-random 64-bit key per id, independent of row order."""
    hash_key = hashlib.sha256(f"dsan-split:{seed}".encode()).hexdigest()[:16]
    keys: npt.NDArray[np.uint64] = pd.util.hash_array(
        np.asarray(patient_ids, dtype=object), hash_key=hash_key, categorize=False
    )
    return keys


def _test_by_random(scans: pd.DataFrame, config: SplitConfig) -> npt.NDArray[np.bool_]:
    codes, patients = pd.factorize(scans["patient_id"], sort=True)
    keys = patient_keys(patients.to_numpy(dtype=object), config.seed)
    n_test = int(round(config.test_fraction * len(patients)))
    chosen = np.zeros(len(patients), dtype=bool)
    chosen[np.argsort(keys, kind="stable")[:n_test]] = True
    return chosen[codes]
POLICIES = {
    "date": _test_by_date,
    "site": _test_by_site,
    "column": _test_by_column,
    "random": _test_by_random,
}


def check_patients(scans: pd.DataFrame) -> None:
    require_columns(scans, ("scan_id", "patient_id"), "scans")
    missing = scans["patient_id"].isna().to_numpy()
    if missing.any():
        raise InputError(
            "expected a patient id for every scan, found none",
            scan=_first_scan(scans, missing),
            reason="missing_patient",
        )


def _test_mask(scans: pd.DataFrame, config: SplitConfig,
               patient_codes: npt.NDArray[np.intp]) -> npt.NDArray[np.bool_]:
    """True per row whose patient has any scan that the policy puts in test."""
    scan_in_test = POLICIES[config.policy](scans, config)
    patient_in_test = np.bincount(patient_codes, weights=scan_in_test.astype(np.float64)) > 0
    return patient_in_test[patient_codes]


def assign_test_set(scans: pd.DataFrame, config: SplitConfig) -> pd.Series:
    """'tv' or 'test' for every row of `scans` (same index), by `config.policy`.

    A patient goes to test when any of its scans does (the split is per patient).
    """
    check_patients(scans)
    codes, _ = pd.factorize(scans["patient_id"])
    in_test = _test_mask(scans, config, codes)
    return pd.Series(np.where(in_test, TEST, TV), index=scans.index, name="set", dtype=object)
