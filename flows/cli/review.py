"""`dsan masks export | import | status`: the human-in-the-loop mask review."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli.app import (
    DataRootOpt,
    ProfileOpt,
    app,
    call,
    console,
    ingested,
    print_lines,
    run_flow,
    stage_setup,
)
from flows.runtime import resolve_data_root, run_name

masks_app = typer.Typer(no_args_is_help=True, help="Human-in-the-loop masks: propose scans to "
                        "reviewers, import their corrections as ground truth.")
app.add_typer(masks_app, name="masks", rich_help_panel="Pipeline")


@masks_app.command("export")
def export(
    n: Annotated[int, typer.Option("--n", min=1, help="how many scans to propose")] = 10,
    strategy: Annotated[str, typer.Option(
        "--strategy", help="uncertainty (the VB-Net's least sure first) or random")]
    = "uncertainty",
    out: Annotated[Path | None, typer.Option(
        "--out", help="folder for the reviewers (default <data root>/review/exports/<id>)")]
    = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of the random strategy")] = 0,
    include_proposed: Annotated[bool, typer.Option(
        "--include-proposed", help="also propose scans exported before and not imported yet")]
    = False,
    profile: ProfileOpt = "demo",
    data_root: DataRootOpt = None,
) -> None:
    """Write the N scans to review: CT, proposed masks (NIfTI + 3D Slicer .seg.nrrd), manifest."""
    from dsan_core.errors import ConfigError
    from dsan_core.segmentation.review import STRATEGIES

    if strategy not in STRATEGIES:
        call(_raise, ConfigError(f"--strategy: expected one of {list(STRATEGIES)}, found "
                                 f"{strategy!r}"))
    root, config = stage_setup(profile, data_root, check_inputs=ingested)
    from flows.review import export_masks_flow
    from storage.inputs import ReviewFolder

    folder = ReviewFolder(folder=out.absolute()) if out is not None else None
    result = run_flow(export_masks_flow, config, root, n, strategy, folder, seed=seed,
                      include_proposed=include_proposed,
                      name=run_name("masks-export", config.profile))
    print_lines(result.summary())
    console.print(f"for the reviewers: {result.folder} (README.txt says what to do)",
                  markup=False)


@masks_app.command("import")
def import_(
    folder: Annotated[Path, typer.Argument(help="the folder dsan masks export wrote, corrected")],
    reviewer: Annotated[str, typer.Option("--reviewer", help="who reviewed (recorded)")],
    profile: ProfileOpt = "demo",
    data_root: DataRootOpt = None,
) -> None:
    """Import corrected masks as ground truth (checked; recorded in mask_reviews, lineage)."""
    root, config = stage_setup(profile, data_root, check_inputs=ingested)
    from flows.review import import_masks_flow
    from storage.inputs import ReviewFolder

    result = run_flow(import_masks_flow, root, ReviewFolder(folder=folder.absolute()),
                      reviewer, name=run_name("masks-import", config.profile))
    print_lines(result.summary())


@masks_app.command("status")
def status(data_root: DataRootOpt = None) -> None:
    """How many scans are reviewed, have ground truth, are proposed, were never seen."""
    from flows.runtime import prefect_environment

    root = resolve_data_root(data_root)
    prefect_environment(root)
    from storage.tables import require_tables
    from tasks._common.contract import StageRun
    from tasks.review import review_status

    with StageRun.open(root) as run:
        call(require_tables, run.layout, "scans")
        print_lines(call(review_status, run))


def _raise(error: Exception) -> None:
    raise error
