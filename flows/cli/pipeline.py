"""`dsan run`: every stage, in order, each cached by content."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.app import (
    DataRootOpt,
    MasksOpt,
    ProfileOpt,
    app,
    console,
    print_lines,
    run_flow,
    stage_setup,
)


@app.command(rich_help_panel="Pipeline")
def run(
    dicom_root: Annotated[Path, typer.Option("--dicom-root", help="the DICOM export")],
    labels: Annotated[Path, typer.Option("--labels", help="labels manifest CSV")],
    masks: MasksOpt = None,
    profile: ProfileOpt = "demo",
    data_root: DataRootOpt = None,
) -> None:
    """Run the whole pipeline (every stage) with caching."""
    root, config = stage_setup(profile, data_root)
    from flows.pipeline import pipeline_flow

    result = run_flow(pipeline_flow, dicom_root, labels, config, root, masks)
    print_lines(result.summary())
    console.print(f"outputs under {root}")
