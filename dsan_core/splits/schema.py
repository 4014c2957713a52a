"""Names shared by the split modules: the two sets, the split table's columns."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from dsan_core.errors import InputError

TV = "tv"
TEST = "test"
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


def require_columns(table: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    """Raise `InputError` naming the columns of `table` that are missing."""
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise InputError(f"table {name} needs columns {list(columns)}; missing {missing}")
