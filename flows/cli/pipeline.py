"""`dsan run`: every stage, in order, each cached by content."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from flows.cli.app import (
    DataRootOpt,
    DicomRootOpt,
    LabelsOpt,
    MasksOpt,
    ProfileOpt,
    TrainAddressOpt,
    app,
    console,
    print_lines,
    print_stage_times,
    run_flow,
    stage_setup,
    train_overrides,
)


@app.command(rich_help_panel="Pipeline")
def run(
    dicom_root: DicomRootOpt,
    labels: LabelsOpt,
    masks: MasksOpt = None,
    refresh: Annotated[list[str] | None, typer.Option(
        "--refresh", help="recompute this stage even when cached (repeatable): ingest, "
                          "train-seg, segment, split, preprocess, train, ensemble, evaluate; "
                          "what depends on it recomputes where its outputs changed")] = None,
    until: Annotated[str | None, typer.Option(
        "--until", help="stop after this stage")] = None,
    profile: ProfileOpt = "demo",
    data_root: DataRootOpt = None,
    train_address: TrainAddressOpt = None,
) -> None:
    """Run the whole pipeline (every stage) with caching: only what changed recomputes."""
    from dsan_core.dicom.index import check_export

    started = time.perf_counter()
    root, config = stage_setup(profile, data_root, train_overrides(train_address),
                               check_inputs=lambda *_: check_export(dicom_root, labels, masks))
    from flows.pipeline import pipeline_flow
    from flows.runtime import run_name
    from storage.inputs import ExportLocation

    export = ExportLocation(dicom_root=dicom_root.absolute(), labels=labels.absolute(),
                            masks=masks.absolute() if masks else None)
    result = run_flow(pipeline_flow, export, config, root, refresh=tuple(refresh or ()),
                      until=until, name=run_name("pipeline", config.profile))
    print_lines(result.summary())
    print_stage_times(root, result.run_id, time.perf_counter() - started)
    console.print(f"outputs under {root}")
