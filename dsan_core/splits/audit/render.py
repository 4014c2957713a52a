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


def _leak_lines(leaks: list[dict[str, Any]], rows: int) -> list[str]:
    lines = [f"leak: {row['kind']} {row['key']} in {row['partitions']} "
             f"(patients {row['patient_ids']}; scans {row['scan_ids']})"
             for row in leaks[:rows]]
    if len(leaks) > rows:
        lines.append(f"... {len(leaks) - rows} more leak(s) in the report")
    return lines


def audit_summary_lines(report: dict[str, Any], report_path: str, rows: int = 20) -> list[str]:
    """Short lines about an audit from its JSON form (`AuditReport.to_json_dict`):
    the verdict, up to `rows` leaks and moved patients, warnings, where the report is."""
    version = str(report["split_version"])[:12]
    if report.get("edited"):
        version = (f"{str(report['content_version'])[:12]} (EDITED: the table claims "
                   f"{version})")
    verdict = "LEAKAGE FOUND" if report["has_leakage"] else "no leakage found"
    lines = [f"split audit of version {version}: {verdict}", *_leak_lines(report["leaks"], rows)]
    if report["warnings"]:
        lines.append(f"{len(report['warnings'])} warning(s), e.g. {report['warnings'][0]}")
    diff = report["diff"]
    if diff is not None:
        lines.append(f"against {str(diff['old_version'])[:12]}: moved {diff['moved_patients']}, "
                     f"new {diff['new_patients']}, disappeared {diff['disappeared_patients']} "
                     "patient(s)")
        lines += [f"moved: {row['patient_id']} {row['old_assignment']} -> "
                  f"{row['new_assignment']}" for row in diff["moved"][:rows]]
    lines.append(f"report: {report_path}")
    return lines
