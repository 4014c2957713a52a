"""The id encoding's fast path (exact uint64 keys) and its arrow fallbacks must agree.

Each fallback is forced by ids the keys cannot hold: a null, an id longer than 64
bytes, or so many distinct bytes per position that the key would overflow 64 bits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from dsan_core.splits.ids import (
    arrow_strings,
    factorize_ids,
    match_positions,
    rank_ids,
    sorted_positions,
    string_keys,
)

SHORT = ["P-b", "P-a", "P-c", "P-a", "P-bb"]
LONG = ["x" * 70 + s for s in SHORT]  # > 64 bytes: no keys
#: 16 positions x 26 letters each: 26**16 > 2**64, so the radix key overflows.
WIDE = ["".join(chr(97 + (i * 7 + j * 3) % 26) for j in range(16)) for i in range(26)]


def _strings(values: list[str | None]) -> pa.Array:
    return arrow_strings(pd.Series(values, dtype="string"))


def test_keys_preserve_order_and_equality() -> None:
    keys = string_keys(_strings(SHORT))
    assert keys is not None
    order = np.argsort(keys[0], kind="stable")
    assert [SHORT[i] for i in order] == sorted(SHORT)
    assert keys[0][1] == keys[0][3]


@pytest.mark.parametrize("values", [LONG, WIDE, ["P-a", None, "P-b"]],
                         ids=["too-long", "too-many-digits", "null"])
def test_keys_refuse_what_they_cannot_hold(values: list[str | None]) -> None:
    assert string_keys(_strings(values)) is None


def test_fixed_length_ids_pack_their_differing_bytes() -> None:
    ids = ["S-0003", "S-0001", "S-0002"]
    keys = string_keys(_strings(ids))
    assert keys is not None and list(np.argsort(keys[0])) == [1, 2, 0]


@pytest.mark.parametrize("values", [SHORT, LONG, WIDE], ids=["keys", "long", "wide"])
def test_sorted_positions_on_both_paths(values: list[str]) -> None:
    positions = sorted_positions(_strings(values))
    assert [values[i] for i in positions] == sorted(values)


@pytest.mark.parametrize("values", [SHORT, LONG], ids=["keys", "long"])
def test_match_positions_on_both_paths(values: list[str]) -> None:
    wanted = [values[2], "absent", values[1], values[4]]
    rows = match_positions(_strings(values), _strings(wanted))
    assert rows.tolist() == [2, -1, 1, 4]


@pytest.mark.parametrize("values", [SHORT, LONG, WIDE], ids=["keys", "long", "wide"])
def test_factorize_ids_matches_pandas(values: list[str]) -> None:
    expected_codes, _ = pd.factorize(pd.Series(values))
    for series in (pd.Series(values, dtype="string"), pd.Series(values, dtype=object)):
        codes, first = factorize_ids(series)
        assert codes.tolist() == expected_codes.tolist()
        assert [values[i] for i in first] == list(dict.fromkeys(values))


def test_factorize_ids_marks_missing_values() -> None:
    codes, first = factorize_ids(pd.Series(["a", None, "b", "a"], dtype=object))
    assert codes.tolist() == [0, -1, 1, 0] and first.tolist() == [0, 2]


@pytest.mark.parametrize("values", [SHORT, LONG], ids=["keys", "long"])
def test_rank_ids_groups_equal_ids(values: list[str]) -> None:
    for series in (pd.Series(values, dtype="string"), pd.Series(values, dtype=object)):
        codes, count = rank_ids(series)
        assert count == len(set(values))
        same = codes[:, None] == codes[None, :]
        assert (same == (np.array(values)[:, None] == np.array(values)[None, :])).all()
