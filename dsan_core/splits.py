"""Patient-level TV/test split and stratified group k-fold inside TV (METHOD.md "Data and labels").

Inputs are pandas tables whose ids are already pseudonymous strings:

- scans: scan_id, patient_id, label ("COVID" | "CAP") and, per policy,
  acquisition_date ("date"), site ("site"), the assignment column ("column").
- groups: scan_id, analysis_bin (the infection-ratio bin of `dsan_core` groups).

Output (`SplitResult.table`), one row per scan, sorted by scan_id:
scan_id, patient_id, set ("tv" | "test"), fold (Int8, null for test), policy, seed,
split_version. `split_version` is the sha256 of the sorted "scan_id<TAB>set<TAB>fold"
lines, so the same assignment always has the same version.

Every assignment is per patient: all scans of a patient share set and fold. Folds are
stratified by label x analysis bin (each patient counts in its dominant stratum) and
seeded per patient by a keyed hash of its id, so the result does not depend on row order.
Given a `previous` table, known patients keep their set and fold; only new patients
are placed, greedily, in the fold that has fewest patients of their stratum.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dsan_core.config import SplitConfig
from dsan_core.errors import InputError

TV = "tv"
TEST = "test"
LABELS: tuple[str, ...] = ("COVID", "CAP")
SPLIT_COLUMNS: tuple[str, ...] = (
    "scan_id",
    "patient_id",
    "set",
    "fold",
    "policy",
    "seed",
    "split_version",
)
#: Fallback for policy "column" when `config.assignment_column` is not a scans column.
LABEL_SPLIT_COLUMN = "label_split"

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SplitResult:
    """A split table with its version; `new_patients` were placed by this call."""

    table: pd.DataFrame
    version: str
    new_patients: tuple[str, ...]
    reshuffled: bool


def require_columns(table: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    """Raise `InputError` naming the columns of `table` that are missing."""
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise InputError(f"table {name} needs columns {list(columns)}; missing {missing}")


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


_POLICIES = {
    "date": _test_by_date,
    "site": _test_by_site,
    "column": _test_by_column,
    "random": _test_by_random,
}


def _check_patients(scans: pd.DataFrame) -> None:
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
    scan_in_test = _POLICIES[config.policy](scans, config)
    patient_in_test = np.bincount(patient_codes, weights=scan_in_test.astype(np.float64)) > 0
    return patient_in_test[patient_codes]


def assign_test_set(scans: pd.DataFrame, config: SplitConfig) -> pd.Series:
    """'tv' or 'test' for every row of `scans` (same index), by `config.policy`.

    A patient goes to test when any of its scans does (the split is per patient).
    """
    _check_patients(scans)
    codes, _ = pd.factorize(scans["patient_id"])
    in_test = _test_mask(scans, config, codes)
    return pd.Series(np.where(in_test, TEST, TV), index=scans.index, name="set", dtype=object)


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


def arrow_strings(values: pd.Series) -> pa.Array:
    """`values` as one pyarrow large_string array (zero-copy for pandas' arrow strings)."""
    array = pa.array(values, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.cast(pa.large_string())


#: Longest string that `string_keys` packs; longer ids take the arrow (hashing) paths.
_MAX_KEY_BYTES = 64


def _offsets(array: pa.Array) -> IntArray:
    """The n + 1 value offsets of a large_string array."""
    buffer = array.buffers()[1]
    if buffer is None:
        return np.zeros(len(array) + 1, dtype=np.int64)
    offsets: IntArray = np.frombuffer(buffer, dtype=np.int64)[
        array.offset:array.offset + len(array) + 1]
    return offsets


def _byte_matrix(array: pa.Array, width: int) -> tuple[npt.NDArray[np.uint8], IntArray]:
    """The bytes of each string of `array` (large_string, no nulls) as rows of an
    (n, width) uint8 matrix, zero padded on the right, and the string lengths."""
    n = len(array)
    offsets = _offsets(array)
    data_buffer = array.buffers()[2]
    data = (np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None
            else np.zeros(0, dtype=np.uint8))
    lengths = np.diff(offsets)
    if n and width and bool((lengths == width).all()):
        start = int(offsets[0])
        return data[start:start + n * width].reshape(n, width), lengths
    matrix = np.zeros((n, width), dtype=np.uint8)
    starts = offsets[:-1]
    for column in range(width):
        live = lengths > column
        matrix[live, column] = data[starts[live] + column]
    return matrix, lengths


def string_keys(*arrays: pa.Array) -> list[npt.NDArray[np.uint64]] | None:
    """Exact, order-preserving uint64 keys of strings, one encoding for all `arrays`.

    Equal strings get equal keys, and key(a) < key(b) exactly when a sorts before b
    bytewise (arrow's string order, shorter prefix first). Each byte position is
    coded by the rank of its byte among the bytes found there (plus "ended"), so ids
    with shared prefixes and small alphabets fit in 64 bits. None when they do not,
    when a string is longer than `_MAX_KEY_BYTES` or any value is null: callers then
    fall back to arrow's hashing kernels.
    """
    arrays = tuple(array.cast(pa.large_string()) for array in arrays)
    if any(array.null_count for array in arrays):
        return None
    sizes = [np.diff(_offsets(array)) for array in arrays]
    width = max((int(size.max()) for size in sizes if len(size)), default=0)
    if width > _MAX_KEY_BYTES:
        return None
    matrices = [_byte_matrix(array, width) for array in arrays]
    shortest = min((int(size.min()) for size in sizes if len(size)), default=width)
    filled = [matrix for matrix, _ in matrices if len(matrix)]
    if not filled or width == 0:
        return [np.zeros(len(array), dtype=np.uint64) for array in arrays]
    reference = filled[0][0]
    varying = np.array([any(bool((matrix[:, column] != reference[column]).any())
                            for matrix in filled) for column in range(width)], dtype=bool)
    varying[shortest:] = True  # some string ends there
    positions = np.flatnonzero(varying)
    if shortest == width and len(positions) <= 8:
        # Fixed length, at most 8 differing bytes: pack them big-endian as they are.
        keys = []
        for matrix, _ in matrices:
            packed = np.zeros((len(matrix), 8), dtype=np.uint8)
            packed[:, :len(positions)] = matrix[:, positions]
            keys.append(packed.view(">u8").ravel().astype(np.uint64))
        return keys
    tables, radices, total = [], [], 1
    for position in positions:
        present = np.zeros(256, dtype=bool)
        for matrix, lengths in matrices:
            column = matrix[:, position]
            if position >= shortest:
                column = column[lengths > position]
            present[np.bincount(column, minlength=256) > 0] = True
        ended = int(position >= shortest)
        size = int(present.sum()) + ended
        total *= size
        if total > 2**64:
            return None
        tables.append((np.cumsum(present) - 1 + ended).astype(np.uint64))
        radices.append(np.uint64(size))
    keys = []
    for matrix, lengths in matrices:
        key = np.zeros(len(matrix), dtype=np.uint64)
        for position, table, radix in zip(positions, tables, radices, strict=True):
            digit = table[matrix[:, position]]
            if position >= shortest:
                digit[lengths <= position] = 0
            key *= radix
            key += digit
        keys.append(key)
    return keys


def _sort_keys(keys: npt.NDArray[np.uint64]) -> tuple[IntArray, bool]:
    """A stable sorting order of `keys` and whether the keys are all distinct."""
    order = np.argsort(keys)
    ordered = keys[order]
    distinct = not bool((ordered[1:] == ordered[:-1]).any())
    if not distinct:
        order = np.argsort(keys, kind="stable")
    return order.astype(np.int64), distinct


def sorted_positions(ids: pa.Array) -> IntArray:
    """Positions that sort `ids` (arange when already sorted)."""
    if len(ids) < 2 or pc.all(pc.less_equal(ids[:-1], ids[1:])).as_py():
        return np.arange(len(ids), dtype=np.int64)
    keys = string_keys(ids)
    if keys is not None:
        return _sort_keys(keys[0])[0]
    positions: IntArray = pc.sort_indices(ids).to_numpy().astype(np.int64)
    return positions


def match_positions(ids: pa.Array, wanted: pa.Array) -> IntArray:
    """Position in `ids` of each of `wanted` (-1 when absent; first match wins)."""
    if ids.equals(wanted):
        return np.arange(len(ids), dtype=np.int64)
    keys = string_keys(ids, wanted)
    if keys is None:
        found = pc.fill_null(pc.index_in(wanted, value_set=ids), -1)
        rows: IntArray = found.to_numpy().astype(np.int64)
        return rows
    id_keys, wanted_keys = keys
    order, distinct = _sort_keys(id_keys)
    sorted_ids = id_keys[order]
    if distinct and np.array_equal(sorted_ids, wanted_keys):
        return order
    wanted_order = np.argsort(wanted_keys)
    wanted_sorted = wanted_keys[wanted_order]
    at = np.minimum(np.searchsorted(sorted_ids, wanted_sorted), max(len(sorted_ids) - 1, 0))
    rows = np.full(len(wanted_keys), -1, dtype=np.int64)
    if len(sorted_ids):
        hit = sorted_ids[at] == wanted_sorted
        rows[wanted_order[hit]] = order[at[hit]]
    return rows


def factorize_ids(values: pd.Series) -> tuple[IntArray, IntArray]:
    """Codes of `values` in order of first appearance (-1 for missing), as
    `pd.factorize`, and the row of each code's first appearance."""
    keys = string_keys(arrow_strings(values)) if isinstance(values.dtype, pd.StringDtype) else None
    if keys is None:
        codes = pd.factorize(values)[0].astype(np.int64)
        if not len(codes):
            return codes, np.zeros(0, dtype=np.int64)
        # Codes are handed out in order: a code is new exactly where the running max grows.
        running = np.maximum.accumulate(codes)
        first = np.flatnonzero(np.r_[running[0] >= 0, running[1:] > running[:-1]])
        return codes, first.astype(np.int64)
    # By sorting the keys: runs of equal keys, numbered by their first row.
    order = np.argsort(keys[0]).astype(np.int64)
    if not len(order):
        return order, order
    ordered = keys[0][order]
    boundary = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(boundary)
    run = np.cumsum(boundary) - 1
    first_rows = np.minimum.reduceat(order, starts)
    by_first = np.argsort(first_rows)
    rank = np.empty(len(starts), dtype=np.int64)
    rank[by_first] = np.arange(len(starts))
    codes = np.empty(len(order), dtype=np.int64)
    codes[order] = rank[run]
    return codes, first_rows[by_first]


def rank_ids(values: pd.Series) -> tuple[IntArray, int]:
    """Codes of `values` (-1 for missing) that number the distinct values in sorted
    order where the ids allow it (any order otherwise), and how many there are.

    For grouping only: cheaper than `factorize_ids` when the order of codes is moot.
    """
    keys = string_keys(arrow_strings(values)) if isinstance(values.dtype, pd.StringDtype) else None
    if keys is None:
        codes, uniques = pd.factorize(values)
        return codes.astype(np.int64), len(uniques)
    order = np.argsort(keys[0])
    ordered = keys[0][order]
    boundary = np.r_[True, ordered[1:] != ordered[:-1]] if len(order) else ordered.astype(bool)
    codes = np.empty(len(order), dtype=np.int64)
    codes[order] = np.cumsum(boundary) - 1
    return codes, int(boundary.sum())


@dataclass(frozen=True)
class _Cohort:
    """Scans in scan_id order, with each row's patient code and per-patient arrays."""

    order: IntArray  # positions in the input scans table, in scan_id order
    scan_ids: pd.Series
    patient_ids: pd.Series
    patient_codes: IntArray
    patients: npt.NDArray[np.object_]  # unique ids in order of their first scan id
    stratum: IntArray  # per patient: dominant label x analysis-bin stratum
    size: IntArray  # per patient: number of scans


def _compact(codes: IntArray) -> IntArray:
    """`codes` (>= 0) renumbered 0.. over the values that occur, keeping their order."""
    used = np.bincount(codes) > 0 if len(codes) else np.zeros(0, dtype=bool)
    renumbered: IntArray = (np.cumsum(used) - 1)[codes]
    return renumbered


def _prepare(scans: pd.DataFrame, groups: pd.DataFrame) -> _Cohort:
    """Sort scans by scan_id and check ids, labels and analysis bins."""
    _check_patients(scans)
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
    bin_codes = _compact(bin_codes.astype(np.int64))
    n_bins = int(bin_codes.max()) + 1 if len(bin_codes) else 1
    is_first_label = (labels == LABELS[0]).to_numpy(dtype=bool, na_value=False)[order]
    row_stratum = np.where(is_first_label, 0, 1) * n_bins + bin_codes
    patient_ids = scans["patient_id"].take(order).reset_index(drop=True)
    codes, first_rows = factorize_ids(patient_ids)
    patients = patient_ids.iloc[first_rows].to_numpy(dtype=object)
    stratum, size = patient_strata(codes, row_stratum.astype(np.int64), len(patients))
    return _Cohort(order=order, scan_ids=pd.Series(pd.arrays.ArrowStringArray(
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


def _fresh_folds(cohort: _Cohort, patient_in_test: npt.NDArray[np.bool_], n_folds: int,
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


def _extend_folds(cohort: _Cohort, patient_in_test: npt.NDArray[np.bool_],
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
    cohort = _prepare(scans, groups)
    scan_in_test = _POLICIES[config.policy](scans, config.model_copy(update={"seed": seed}))
    weights = scan_in_test[cohort.order].astype(np.float64)
    patient_in_test = np.bincount(cohort.patient_codes, weights=weights,
                                  minlength=len(cohort.patients)) > 0
    if previous is None or reshuffle:
        folds = _fresh_folds(cohort, patient_in_test, config.n_folds, seed)
        is_new = np.ones(len(cohort.patients), dtype=bool)
    else:
        patient_in_test, folds, is_new = _extend_folds(cohort, patient_in_test, previous,
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
