"""`dsan run`: every stage, in order, each cached by content."""

from __future__ import annotations

from flows.cli.app import (
    DataRootOpt,
    DicomRootOpt,
    LabelsOpt,
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
    dicom_root: DicomRootOpt,
    labels: LabelsOpt,
    masks: MasksOpt = None,
    profile: ProfileOpt = "demo",
    data_root: DataRootOpt = None,
) -> None:
    """Run the whole pipeline (every stage) with caching."""
    root, config = stage_setup(profile, data_root)
    from flows.pipeline import pipeline_flow
    from storage.inputs import ExportLocation

    export = ExportLocation(dicom_root=dicom_root.absolute(), labels=labels.absolute(),
                            masks=masks.absolute() if masks else None)
    result = run_flow(pipeline_flow, export, config, root)
    print_lines(result.summary())
    console.print(f"outputs under {root}")
