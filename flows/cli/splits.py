"""`dsan split` and `dsan audit-splits`."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.app import DataRootOpt, ProfileOpt, app, ingested, print_lines, run_flow, stage_setup

ReshuffleOpt = Annotated[
    bool, typer.Option("--reshuffle", help="redraw every assignment: a NEW split version")
]
AgainstOpt = Annotated[
    str | None,
    typer.Option("--against", help="an earlier split version (or a unique prefix) to diff"),
]


@app.command("split", rich_help_panel="Stages")
def split(reshuffle: ReshuffleOpt = False, profile: ProfileOpt = "demo",
          data_root: DataRootOpt = None) -> None:
    """Patient-level TV/test split and CV folds; known patients never move."""
    root, config = stage_setup(profile, data_root, check_inputs=ingested)
    from flows.runtime import run_name
    from flows.splits import split_flow

    result = run_flow(split_flow, config.split, root, reshuffle=reshuffle,
                      name=run_name("split", config.profile))
    print_lines(result.summary())


@app.command("audit-splits", rich_help_panel="Inspect")
def audit_splits(against: AgainstOpt = None, profile: ProfileOpt = "demo",
                 data_root: DataRootOpt = None) -> None:
    """Check the current split for leakage; exit 1 when any id crosses partitions."""
    root, config = stage_setup(profile, data_root, check_inputs=ingested)
    from flows.runtime import run_name
    from flows.splits import audit_splits_flow

    result = run_flow(audit_splits_flow, config.split, root, against=against,
                      name=run_name("audit-splits", config.profile))
    print_lines(result.summary())
    if result.has_leakage:
        raise typer.Exit(code=1)
