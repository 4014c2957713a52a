"""`dsan preprocess`: registered on the main app (flows/cli.py imports this module)."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli import DataRootOpt, ProfileOpt, _run, _stage_entry, app, console, load_config

DaskAddressOpt = Annotated[
    str | None,
    typer.Option("--dask-address",
                 help="an existing Dask scheduler (e.g. tcp://host:8786) instead of a local "
                      "cluster"),
]


@app.command("preprocess")
def preprocess(
    profile: ProfileOpt = "demo",
    data_root: DataRootOpt = None,
    dask_address: DaskAddressOpt = None,
) -> None:
    """Resample, window and lung-mask every segmented scan onto the network's grid."""
    root = _stage_entry(data_root)
    overrides = {"runtime": {"dask": {"address": dask_address}}} if dask_address else None
    config = _run(load_config, profile, overrides)
    from flows.preprocessing import preprocess_flow
    from flows.runtime import quiet_flow_settings

    with quiet_flow_settings():
        result = _run(preprocess_flow, config.preprocess, config.runtime, root)
    for line in result["summary"]:
        console.print(line)
