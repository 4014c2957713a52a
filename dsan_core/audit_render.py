"""Plain renderers for the split audit: Markdown tables and JSON-safe values."""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd


def json_value(value: Any) -> Any:
    """`value` as plain JSON types: numpy scalars unwrapped, NaN/NA -> None, dates -> ISO."""
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | date | pd.Timestamp):
        return value.isoformat()
    if isinstance(value, bool | int | float | str):
        return value
    return str(value)


def table_records(table: pd.DataFrame, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows of `table` (index included as a column when named) as JSON-safe dicts."""
    frame = table.reset_index() if table.index.name is not None else table
    if limit is not None:
        frame = frame.head(limit)
    records = frame.to_dict(orient="records")
    return [json_value(record) for record in records]


def _cell(value: Any) -> str:
    value = json_value(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: pd.DataFrame, limit: int | None = None) -> str:
    """A GitHub-flavoured Markdown table; rows past `limit` are counted, not shown."""
    frame = table.reset_index() if table.index.name is not None else table
    if frame.empty:
        return "_(none)_\n"
    shown = frame if limit is None else frame.head(limit)
    header = "| " + " | ".join(str(column) for column in shown.columns) + " |"
    rule = "|" + "|".join("---" for _ in shown.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |"
            for row in shown.itertuples(index=False, name=None)]
    lines = [header, rule, *body]
    if len(frame) > len(shown):
        lines.append(f"\n_... {len(frame) - len(shown)} more rows not shown_")
    return "\n".join(lines) + "\n"
