"""Options of one pipeline run that every task of it reads, keyed by the run id:
`<root>/cache/runs/<run_id>.json`. A task gets only (data root, run id), so a task run
alone on a worker still sees its run's options (e.g. which stages to refresh)."""

from __future__ import annotations

import json
from typing import Any

from storage.atomic import write_json
from storage.layout import DataLayout


def write_run_options(layout: DataLayout, run_id: str, options: dict[str, Any]) -> None:
    write_json(layout.run_options(run_id), options)


def read_run_options(layout: DataLayout, run_id: str) -> dict[str, Any]:
    path = layout.run_options(run_id)
    if not path.exists():
        return {}
    options: dict[str, Any] = json.loads(path.read_text())
    return options
