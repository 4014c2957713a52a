"""`dsan status`: what a rerun would recompute, without running anything."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.app import (
    DataRootOpt,
    MasksOpt,
    ProfileOpt,
    app,
    call,
    console,
    load_config,
    print_lines,
)
from flows.runtime import prefect_environment, resolve_data_root


@app.command(rich_help_panel="Inspect")
def status(
    dicom_root: Annotated[str | None, typer.Option(
        "--dicom-root", help="also check the export for new or changed files")] = None,
    labels: Annotated[str | None, typer.Option("--labels", help="the export's labels")] = None,
    masks: MasksOpt = None,
    verify: Annotated[bool, typer.Option(
        "--verify", help="rehash every output (slow): a file whose bytes changed behind the "
                         "cache's back marks its stage stale")] = False,
    profile: ProfileOpt = "demo",
    data_root: DataRootOpt = None,
) -> None:
    """Per stage: cached, stale (and what changed) or never run."""
    from pathlib import Path

    from rich.table import Table

    root = resolve_data_root(data_root)
    config = call(load_config, profile)
    prefect_environment(root)  # before tasks import prefect: no telemetry, home under root
    from storage.inputs import ExportLocation
    from storage.layout import DataLayout
    from storage.lock import data_root_lock
    from tasks._common.contract import StageRun
    from tasks.status import pipeline_status, verify_outputs

    export = None
    if dicom_root is not None and labels is not None:
        export = ExportLocation(dicom_root=Path(dicom_root).absolute(),
                                labels=Path(labels).absolute(),
                                masks=masks.absolute() if masks else None)
    with StageRun.open(root) as run:
        if verify:
            with data_root_lock(DataLayout(root), command="dsan status --verify"):
                problems = call(verify_outputs, run)
            print_lines([f"verify: {p}" for p in problems]
                        or ["verify: every output matches its manifest"])
        rows = call(pipeline_status, run, config, export)
    view = Table(title=f"status of {root}")
    for column in ("stage", "state", "what changed"):
        view.add_column(column)
    for row in rows:
        colour = {"cached": "green", "stale": "yellow"}.get(row.state, "red")
        view.add_row(row.stage, f"[{colour}]{row.state}[/]", row.detail)
    console.print(view)
