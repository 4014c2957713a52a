"""`dsan split` and `dsan audit-splits` (registered on `flows.cli.app` on import)."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli import DataRootOpt, ProfileOpt, _run, _stage_entry, app, console, load_config

ReshuffleOpt = Annotated[
    bool, typer.Option("--reshuffle", help="redraw every assignment: a NEW split version")
]
AgainstOpt = Annotated[
    str | None,
    typer.Option("--against", help="an earlier split version (or a unique prefix) to diff"),
]


@app.command("split")
def split(reshuffle: ReshuffleOpt = False, profile: ProfileOpt = "demo",
          data_root: DataRootOpt = None) -> None:
    """Patient-level TV/test split and CV folds; known patients never move."""
    root = _stage_entry(data_root)
    config = _run(load_config, profile)
    from flows.runtime import quiet_flow_settings
    from flows.splits import split_flow

    with quiet_flow_settings():
        result = _run(split_flow, config.split, root, reshuffle=reshuffle)
    for line in result["summary"]:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command("audit-splits")
def audit_splits(against: AgainstOpt = None, profile: ProfileOpt = "demo",
                 data_root: DataRootOpt = None) -> None:
    """Check the current split for leakage; exit 1 when any id crosses partitions."""
    root = _stage_entry(data_root)
    config = _run(load_config, profile)
    from flows.runtime import quiet_flow_settings
    from flows.splits import audit_splits_flow

    with quiet_flow_settings():
        result = _run(audit_splits_flow, config.split, root, against=against)
    for line in result["summary"]:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if result["has_leakage"]:
        raise typer.Exit(code=1)
