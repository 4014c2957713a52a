"""`dsan retrain`, `dsan models`, `dsan promote`, `dsan rollback`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.app import (
    DataRootOpt,
    MasksOpt,
    ProfileOpt,
    app,
    call,
    console,
    fail,
    print_lines,
    print_stage_times,
    run_flow,
    stage_setup,
)
from flows.runtime import resolve_data_root, run_name

ReasonOpt = Annotated[str, typer.Option("--reason", help="why (kept with the decision)")]


@app.command(rich_help_panel="Pipeline")
def retrain(
    dicom_root: Annotated[Path | None, typer.Option(
        "--dicom-root", help="the new drop (default: the profile's retrain.drop_dicom_root)")]
    = None,
    labels: Annotated[Path | None, typer.Option(
        "--labels", help="its labels (default: retrain.drop_labels)")] = None,
    masks: MasksOpt = None,
    profile: ProfileOpt = "demo",
    data_root: DataRootOpt = None,
) -> None:
    """Add a drop of new studies, retrain what changed, promote only past the gate."""
    from dsan_core.dicom.index import check_export

    started = time.perf_counter()
    root, config = stage_setup(profile, data_root, check_inputs=lambda config, _: check_export(
        *config.retrain.drop(dicom_root, labels, masks)))
    from flows.pipeline import retrain_flow
    from storage.inputs import ExportLocation

    drop, drop_labels, drop_masks = config.retrain.drop(dicom_root, labels, masks)  # checked
    export = ExportLocation(dicom_root=drop, labels=drop_labels, masks=drop_masks)
    result = run_flow(retrain_flow, export, config, root, name=run_name("retrain",
                                                                       config.profile))
    print_lines(result.summary())
    print_stage_times(root, result.run_id, time.perf_counter() - started)


@app.command(rich_help_panel="Inspect")
def models(data_root: DataRootOpt = None) -> None:
    """Every trained ensemble of the data root, which is promoted, and the decisions."""
    from rich.table import Table

    from storage.layout import DataLayout
    from storage.tables import read_table, table_exists

    layout = DataLayout(resolve_data_root(data_root))
    if not table_exists(layout, "models"):
        fail(RuntimeError("no model registered yet: run dsan run"))
    view = Table(title="models")
    for column in ("model", "status", "created", "split", "TV/test scans", "test AUC",
                   "w (extreme, middle)"):
        view.add_column(column)
    for r in call(read_table, layout, "models").itertuples(index=False):
        view.add_row(r.model_id, r.status, f"{r.created_at:%Y-%m-%d %H:%M}",
                     r.split_version[:12], f"{r.n_tv}/{r.n_test}", f"{r.test_auc:.3f}",
                     f"{r.w_extreme:.2f}, {r.w_middle:.2f}")
    console.print(view)
    if table_exists(layout, "model_decisions"):
        decisions = call(read_table, layout, "model_decisions")
        print_lines([f"{d.at:%Y-%m-%d %H:%M} {d.action} {d.model_id} by {d.actor}"
                     + (f" (champion {d.champion_id})" if d.champion_id else "")
                     + f": {d.reason}" for d in decisions.itertuples(index=False)])


@app.command(rich_help_panel="Pipeline")
def promote(model: Annotated[str, typer.Argument(help="a model id (or a unique prefix)")],
            reason: ReasonOpt = "promoted by hand", profile: ProfileOpt = "demo",
            data_root: DataRootOpt = None) -> None:
    """Promote a model by hand, overruling the gate (recorded)."""
    root, _ = stage_setup(profile, data_root, runs_flow=False)
    from tasks._common.contract import StageRun
    from tasks.models import promote as promote_model

    with StageRun.open(root) as run:
        previous = call(promote_model, run, model, reason)
    console.print(f"promoted {model} (was {previous or 'none'})", markup=False)


@app.command(rich_help_panel="Pipeline")
def rollback(reason: ReasonOpt = "rolled back by hand", profile: ProfileOpt = "demo",
             data_root: DataRootOpt = None) -> None:
    """Promote again the model promoted before the current one (recorded)."""
    root, _ = stage_setup(profile, data_root, runs_flow=False)
    from tasks._common.contract import StageRun
    from tasks.models import rollback as rollback_model

    with StageRun.open(root) as run:
        current, earlier = call(rollback_model, run, reason)
    console.print(f"rolled back from {current} to {earlier}", markup=False)
