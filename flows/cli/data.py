"""`dsan synth` (the synthetic cohort) and `dsan tables` (what the data root holds)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.app import DataRootOpt, ProfileOpt, app, call, console, load_config
from flows.runtime import resolve_data_root


@app.command(rich_help_panel="Data")
def synth(
    out: Annotated[Path, typer.Option("--out", help="folder for dicom/, masks/, labels.csv")],
    profile: ProfileOpt = "demo",
    patients: Annotated[int | None, typer.Option(
        "--patients", min=2, help="labelled patients instead of the profile's (e.g. a few "
                                  "paper-sized studies for a benchmark)")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="processes rendering studies (default: one per CPU core); "
                                 "the files are the same bytes")] = None,
) -> None:
    """Generate the seeded synthetic chest-CT cohort (a stand-in hospital export)."""
    from rich.progress import Progress

    from dsan_core.synthetic import generate_cohort

    overrides = {"synth": {"n_patients": patients}} if patients is not None else None
    config = call(load_config, profile, overrides)
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("writing synthetic cohort", total=None)

        def report(done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total)

        summary = call(generate_cohort, config.synth, out, progress=report,
                       workers=workers or os.cpu_count() or 1)
    console.print(summary.as_text())
    console.print(f"cohort written under {out}")


@app.command(rich_help_panel="Inspect")
def tables(data_root: DataRootOpt = None) -> None:
    """Print every table's row count and where it is."""
    from rich.table import Table

    from storage.layout import DataLayout
    from storage.lineage import read_lineage
    from storage.schemas import SCHEMAS
    from storage.tables import read_table, table_exists

    layout = DataLayout(resolve_data_root(data_root))
    view = Table(title=f"tables under {layout.tables_dir}")
    view.add_column("table")
    view.add_column("rows", justify="right")
    view.add_column("file")
    for name in SCHEMAS:
        if name == "lineage":
            count, where = str(len(read_lineage(layout))), str(layout.lineage_dir)
        elif table_exists(layout, name):
            count, where = str(len(call(read_table, layout, name))), str(layout.table(name))
        else:
            count, where = "-", "(not written yet)"
        view.add_row(name, count, where)
    console.print(view)
