"""`dsan train`."""

from __future__ import annotations

from typing import Annotated

import typer

from flows.cli.app import (
    DataRootOpt,
    ProfileOpt,
    TrainAddressOpt,
    app,
    ingested,
    print_lines,
    run_flow,
    stage_setup,
    train_overrides,
)
from flows.runtime import run_name


@app.command(rich_help_panel="Stages")
def train(
    fold: Annotated[list[int] | None, typer.Option(
        "--fold", help="train only this fold (repeatable; default: every fold)")] = None,
    branch: Annotated[list[str] | None, typer.Option(
        "--branch", help="att_us | att_ss | rn34_us (repeatable; default: all three)")] = None,
    profile: ProfileOpt = "demo",
    data_root: DataRootOpt = None,
    train_address: TrainAddressOpt = None,
) -> None:
    """Train the classifier: one task per fold x branch, cached; the tables of every model."""
    root, config = stage_setup(profile, data_root, train_overrides(train_address),
                               check_inputs=ingested)
    from flows.training import training_flow

    result = run_flow(training_flow, config.train, config.split, config.runtime, root,
                      folds=tuple(fold) if fold else None,
                      branches=tuple(branch) if branch else None,
                      name=run_name("train", config.profile))
    print_lines(result.summary())
