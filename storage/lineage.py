"""The lineage record: one row per stage execution (cache hit or not).

Rows are written as small append-only Parquet parts (one per stage run), so
concurrent stages never rewrite a shared file; `read_lineage` concatenates them.
"""

from __future__ import annotations

import functools
import json
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import atomic_path
from storage.layout import DataLayout
from storage.schemas import LINEAGE


@functools.cache
def code_version() -> str:
    """The installed dsan version, plus the git commit when run from a checkout."""
    try:
        version = metadata.version("dsan")
    except metadata.PackageNotFoundError:
        version = "unknown"
    here = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{version}+g{commit}" if commit else version


@dataclass(frozen=True)
class LineageRow:
    run_id: str
    stage: str
    key: str
    cache_hit: bool
    input_hashes: Mapping[str, str]
    output_hashes: Mapping[str, str]
    config_hash: str
    started_at: datetime
    ended_at: datetime


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def record_lineage(layout: DataLayout, row: LineageRow) -> Path:
    frame = pd.DataFrame(
        [
            {
                "run_id": row.run_id,
                "stage": row.stage,
                "key": row.key,
                "cache_hit": row.cache_hit,
                "input_hashes": json.dumps(dict(row.input_hashes), sort_keys=True),
                "output_hashes": json.dumps(dict(row.output_hashes), sort_keys=True),
                "config_hash": row.config_hash,
                "code_version": code_version(),
                "started_at": row.started_at,
                "ended_at": row.ended_at,
            }
        ]
    )
    table = pa.Table.from_pandas(frame, schema=LINEAGE, preserve_index=False)
    day = row.started_at.astimezone(UTC).strftime("%Y-%m-%d")
    stamp = row.started_at.astimezone(UTC).strftime("%H%M%S%f")
    # Several rows of one run and stage can share a start (one StageRun, several calls).
    name = f"{stamp}-{row.run_id}-{row.stage}-{uuid.uuid4().hex[:8]}.parquet"
    path = layout.lineage_dir / day / name
    with atomic_path(path) as temp:
        pq.write_table(table.replace_schema_metadata(None), temp)
    return path


def read_lineage(layout: DataLayout) -> pd.DataFrame:
    parts = sorted(layout.lineage_dir.rglob("*.parquet")) if layout.lineage_dir.exists() else []
    parts = [p for p in parts if not p.name.startswith(".tmp-")]
    if not parts:
        return LINEAGE.empty_table().to_pandas()
    tables = [pq.read_table(p, schema=LINEAGE) for p in parts]
    return pa.concat_tables(tables).to_pandas().sort_values(
        ["started_at", "ended_at"], ignore_index=True, kind="stable")


def utcnow() -> datetime:
    return datetime.now(UTC)


def last_run_id(layout: DataLayout) -> str | None:
    """The run id of the most recently started stage, None before any run."""
    rows = read_lineage(layout)
    return None if rows.empty else str(rows["run_id"].iloc[-1])


def stage_times(layout: DataLayout, run_id: str) -> pd.DataFrame:
    """Per stage of one run, in order: wall seconds (its lineage row's start to end) and
    whether it was a cache hit."""
    rows = read_lineage(layout)
    rows = rows[rows["run_id"] == run_id]
    seconds = (rows["ended_at"] - rows["started_at"]).dt.total_seconds()
    return pd.DataFrame({"stage": rows["stage"].to_numpy(), "seconds": seconds.to_numpy(),
                         "cache_hit": rows["cache_hit"].to_numpy()})
