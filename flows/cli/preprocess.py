"""`dsan preprocess`."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.app import DataRootOpt, ProfileOpt, app, ingested, print_lines, run_flow, stage_setup

DaskAddressOpt = Annotated[
    str | None,
    typer.Option("--dask-address",
                 help="an existing Dask scheduler (e.g. tcp://host:8786) instead of a local "
                      "cluster"),
]


@app.command("preprocess", rich_help_panel="Stages")
def preprocess(
    profile: ProfileOpt = "demo",
    data_root: DataRootOpt = None,
    dask_address: DaskAddressOpt = None,
) -> None:
    """Resample, window and lung-mask every segmented scan onto the network's grid."""
    overrides = {"runtime": {"dask": {"address": dask_address}}} if dask_address else None
    root, config = stage_setup(profile, data_root, overrides, check_inputs=ingested)
    from flows.preprocessing import preprocess_flow
    from flows.runtime import run_name

    result = run_flow(preprocess_flow, config.preprocess, config.runtime, root,
                      name=run_name("preprocess", config.profile))
    print_lines(result.summary())
