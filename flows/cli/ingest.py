"""`dsan ingest`."""

from __future__ import annotations

from flows.cli.app import (
    DataRootOpt,
    DicomRootOpt,
    LabelsOpt,
    MasksOpt,
    ProfileOpt,
    app,
    print_lines,
    run_flow,
    stage_setup,
)


@app.command(rich_help_panel="Stages")
def ingest(
    dicom_root: DicomRootOpt,
    labels: LabelsOpt,
    masks: MasksOpt = None,
    profile: ProfileOpt = "demo",
    data_root: DataRootOpt = None,
) -> None:
    """Index, choose, validate, decode and pseudonymise DICOM series."""
    from dsan_core.dicom.index import check_export

    root, config = stage_setup(profile, data_root,
                               check_inputs=lambda *_: check_export(dicom_root, labels, masks))
    from flows.ingestion import ingestion_flow
    from flows.runtime import run_name
    from storage.inputs import ExportLocation

    export = ExportLocation(dicom_root=dicom_root.absolute(), labels=labels.absolute(),
                            masks=masks.absolute() if masks else None)
    result = run_flow(ingestion_flow, export, config.ingest, config.runtime, root,
                      name=run_name("ingest", config.profile))
    print_lines(result.summary.lines())
