"""Id encoding for millions of rows: pseudonymous string ids as exact, order-preserving
uint64 keys (`string_keys`), with arrow's hashing kernels as the fallback when ids do
not fit (too long, null, or too many distinct bytes per position). Every function
gives the same answer on either path; the fast path only saves time.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dsan_core.splits.schema import IntArray


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
