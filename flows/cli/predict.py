"""`dsan predict`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flows.cli.app import (
    DataRootOpt,
    ProfileOpt,
    app,
    console,
    print_lines,
    run_flow,
    stage_setup,
)
from flows.runtime import run_name

if TYPE_CHECKING:
    from storage.layout import DataLayout


@app.command(rich_help_panel="Pipeline")
def predict(
    dicom: Annotated[Path, typer.Option("--dicom", help="folder of new studies (DICOM)")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="where maps and overlays go (default <data root>/predict)")] = None,
    masks: Annotated[Path | None, typer.Option(
        "--masks", help="masks made elsewhere, <SeriesInstanceUID>_{lung,infection}.nii.gz "
                        "(used when the model was trained on imported masks; studies without "
                        "them are segmented by the data root's VB-Net, or the classical "
                        "segmenter)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON line per study")] = False,
    profile: ProfileOpt = "demo",
    data_root: DataRootOpt = None,
) -> None:
    """P(COVID) of new studies with the trained ensemble, and their attention maps."""
    from dsan_core.dicom.index import check_export
    from storage.registry import require_promoted

    def check_inputs(_config: object, layout: DataLayout) -> None:
        check_export(dicom, masks=masks, dicom_option="--dicom")
        require_promoted(layout)

    root, config = stage_setup(profile, data_root, check_inputs=check_inputs)
    from flows.predict import predict_flow
    from storage.inputs import PredictRequest

    request = PredictRequest(dicom_root=dicom.absolute(),
                             out=(out or root / "predict").absolute(),
                             masks=masks.absolute() if masks else None)
    result = run_flow(predict_flow, request, config, root, name=run_name("predict",
                                                                        config.profile))
    if as_json:
        for record in result.records():
            console.print(json.dumps(record, sort_keys=True), markup=False, highlight=False,
                          soft_wrap=True)
        return
    print_lines(result.summary())
    console.print(f"maps and overlays under {request.out}", markup=False)
