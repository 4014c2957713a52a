"""`dsan lineage`: what produced what, and how long each stage took."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.app import DataRootOpt, app, fail, print_stage_times
from flows.runtime import resolve_data_root


@app.command(rich_help_panel="Inspect")
def lineage(
    last: Annotated[bool, typer.Option("--last", help="the stages of the last run and their "
                                                      "wall time")] = False,
    data_root: DataRootOpt = None,
) -> None:
    """The last run's stages with their wall time and cache hits (the default)."""
    from storage.layout import DataLayout
    from storage.lineage import last_run_id

    root = resolve_data_root(data_root)
    run_id = last_run_id(DataLayout(root))
    if run_id is None:
        fail(RuntimeError("no stage has run on this data root yet"))
        return
    print_stage_times(root, run_id)
