"""The scans of a split, prepared once: sorted by scan id, checked, coded per patient
with each patient's stratum (dominant label x analysis bin) and scan count."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dsan_core.errors import InputError
from dsan_core.groups import LABELS
from dsan_core.splits.ids import arrow_strings, factorize_ids, match_positions, sorted_positions
from dsan_core.splits.policies import check_patients
from dsan_core.splits.schema import IntArray, require_columns


@dataclass(frozen=True)
class Cohort:
    """Scans in scan_id order, with each row's patient code and per-patient arrays."""

    order: IntArray  # positions in the input scans table, in scan_id order
    scan_ids: pd.Series
    patient_ids: pd.Series
    patient_codes: IntArray
    patients: npt.NDArray[np.object_]  # unique ids in order of their first scan id
    stratum: IntArray  # per patient: dominant label x analysis-bin stratum
    size: IntArray  # per patient: number of scans


def compact_codes(codes: IntArray) -> IntArray:
    """`codes` (>= 0) renumbered 0.. over the values that occur, keeping their order."""
    used = np.bincount(codes) > 0 if len(codes) else np.zeros(0, dtype=bool)
    renumbered: IntArray = (np.cumsum(used) - 1)[codes]
    return renumbered


def prepare_cohort(scans: pd.DataFrame, groups: pd.DataFrame) -> Cohort:
    """Sort scans by scan_id and check ids, labels and analysis bins."""
    check_patients(scans)
    require_columns(scans, ("label",), "scans")
    require_columns(groups, ("scan_id", "analysis_bin"), "groups")
    ids = arrow_strings(scans["scan_id"])
    order = sorted_positions(ids)
    if not np.array_equal(order, np.arange(len(order))):
        ids = ids.take(pa.array(order))
    if len(ids) > 1:
        same = pc.equal(ids[1:], ids[:-1]).to_numpy(zero_copy_only=False)
        if same.any():
            raise InputError("expected unique scan ids, found a duplicate",
                             scan=str(ids[int(np.flatnonzero(same)[0])]), reason="duplicate_scan")
    labels = scans["label"]
    bad_label = (~labels.isin(list(LABELS))).to_numpy()[order]
    if bad_label.any():
        row = int(np.flatnonzero(bad_label)[0])
        raise InputError(f"expected label in {list(LABELS)}, found {labels.iloc[order[row]]!r}",
                         scan=str(ids[row]), reason="bad_label")
    # Groups: the first row of each scan_id counts.
    rows = match_positions(arrow_strings(groups["scan_id"]), ids)
    all_bin_codes = pd.factorize(groups["analysis_bin"], sort=True)[0]
    bin_codes = np.where(rows >= 0, all_bin_codes[np.maximum(rows, 0)], -1)
    missing = bin_codes < 0
    if missing.any():
        raise InputError("expected an analysis bin (groups stage) for every scan, found none",
                         scan=str(ids[int(np.flatnonzero(missing)[0])]), reason="missing_group")
    bin_codes = compact_codes(bin_codes.astype(np.int64))
    n_bins = int(bin_codes.max()) + 1 if len(bin_codes) else 1
    is_first_label = (labels == LABELS[0]).to_numpy(dtype=bool, na_value=False)[order]
    row_stratum = np.where(is_first_label, 0, 1) * n_bins + bin_codes
    patient_ids = scans["patient_id"].take(order).reset_index(drop=True)
    codes, first_rows = factorize_ids(patient_ids)
    patients = patient_ids.iloc[first_rows].to_numpy(dtype=object)
    stratum, size = patient_strata(codes, row_stratum.astype(np.int64), len(patients))
    return Cohort(order=order, scan_ids=pd.Series(pd.arrays.ArrowStringArray(
                       pa.chunked_array([ids.cast(pa.large_string())]))).astype("str"),
                   patient_ids=patient_ids.astype("str"), patient_codes=codes,
                   patients=patients, stratum=stratum, size=size)


def patient_strata(
    patient_codes: IntArray, stratum: IntArray, n_patients: int
) -> tuple[IntArray, IntArray]:
    """Per patient: its dominant stratum (most scans; ties -> lowest code) and scan count."""
    n_strata = int(stratum.max()) + 1 if len(stratum) else 1
    counts = np.bincount(patient_codes * n_strata + stratum, minlength=n_patients * n_strata)
    counts = counts.reshape(n_patients, n_strata)
    return counts.argmax(axis=1).astype(np.int64), counts.sum(axis=1).astype(np.int64)
