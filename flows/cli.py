"""`dsan`: the command line. Flow modules are imported lazily, after the embedded
Prefect environment has been set for the chosen data root."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from flows.runtime import prefect_environment, resolve_data_root

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(stderr=False)
err = Console(stderr=True)

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"

ProfileOpt = Annotated[
    str, typer.Option("--profile", "-p", help="test | demo | paper, or a path to a YAML profile")
]
DataRootOpt = Annotated[
    Path | None,
    typer.Option("--data-root", help="where outputs go (default $DSAN_DATA_ROOT or ./dsan-data)"),
]

MasksOpt = Annotated[
    Path | None,
    typer.Option("--masks", help="ground-truth masks: <SeriesInstanceUID>_{lung,infection}.nii.gz"),
]


def profile_path(profile: str) -> Path:
    candidate = Path(profile)
    if candidate.suffix in {".yaml", ".yml"}:
        return candidate
    return PROFILES_DIR / f"{profile}.yaml"


def load_config(profile: str, overrides: dict[str, Any] | None = None) -> Any:
    from dsan_core.config import load_profile

    return load_profile(profile_path(profile), overrides)


def _fail(error: Exception) -> None:
    err.print(f"[bold red]error:[/] {error}")
    raise typer.Exit(code=2)


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from dsan_core.errors import DsanError

    try:
        return fn(*args, **kwargs)
    except DsanError as error:
        _fail(error)


def run_flow(flow_fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a flow without heartbeats; dsan errors become exit code 2."""
    from flows.runtime import quiet_flow_settings

    with quiet_flow_settings():
        return _run(flow_fn, *args, **kwargs)


def print_lines(lines: list[str]) -> None:
    # Summaries hold "[stage]" prefixes and ids: print them verbatim, no rich markup.
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", help="folder for dicom/, masks/, labels.csv")],
    profile: ProfileOpt = "demo",
) -> None:
    """Generate the seeded synthetic chest-CT cohort (a stand-in hospital export)."""
    from rich.progress import Progress

    from dsan_core.synthetic import generate_cohort

    config = _run(load_config, profile)
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("writing synthetic cohort", total=None)

        def report(done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total)

        summary = _run(generate_cohort, config.synth, out, progress=report)
    console.print(summary.as_text())
    console.print(f"cohort written under {out}")


def stage_setup(profile: str, data_root: Path | None,
                overrides: dict[str, Any] | None = None) -> tuple[Path, Any]:
    """The data root (with the embedded Prefect environment set for it) and the config."""
    root = resolve_data_root(data_root)
    prefect_environment(root)
    return root, _run(load_config, profile, overrides)


@app.command()
def ingest(
    dicom_root: Annotated[Path, typer.Option("--dicom-root", help="the DICOM export to ingest")],
    labels: Annotated[Path, typer.Option("--labels", help="labels manifest CSV")],
    masks: MasksOpt = None,
    profile: ProfileOpt = "demo",
    data_root: DataRootOpt = None,
) -> None:
    """Index, choose, validate, decode and pseudonymise DICOM series."""
    root, config = stage_setup(profile, data_root)
    from flows.ingestion import ingestion_flow

    result = run_flow(ingestion_flow, dicom_root, labels, config.ingest, config.runtime, root,
                      masks)
    print_lines(result.summary.lines())


@app.command()
def run(
    dicom_root: Annotated[Path, typer.Option("--dicom-root")],
    labels: Annotated[Path, typer.Option("--labels")],
    masks: MasksOpt = None,
    profile: ProfileOpt = "demo",
    data_root: DataRootOpt = None,
) -> None:
    """Run the whole pipeline (every stage that exists) with caching."""
    root, config = stage_setup(profile, data_root)
    from flows.pipeline import pipeline_flow

    result = run_flow(pipeline_flow, dicom_root, labels, config, root, masks)
    print_lines(result["summary"])
    console.print(f"outputs under {root}")


@app.command("train-seg")
def train_seg(profile: ProfileOpt = "demo", data_root: DataRootOpt = None) -> None:
    """Train the VB-Net on ingested scans with ground-truth masks (cached; resumes)."""
    root, config = stage_setup(profile, data_root)
    from flows.segmentation import train_segmenter_flow

    result = run_flow(train_segmenter_flow, config.segmentation, config.runtime, root)
    data = result["data"]
    console.print(f"VB-Net {data['model_version']}: best epoch {data['best_epoch']} "
                  f"(score {data['best_score']:.4f}), {data['n_train']} train / "
                  f"{data['n_val']} val scans, cache hit: {data['cache_hit']}", markup=False)


@app.command()
def segment(profile: ProfileOpt = "demo", data_root: DataRootOpt = None) -> None:
    """Segment every scan, then the infection, groups and evaluation tables and figures."""
    root, config = stage_setup(profile, data_root)
    from flows.segmentation import segmentation_flow

    result = run_flow(segmentation_flow, config.segmentation, config.groups, config.runtime, root)
    print_lines(result["summary"])


@app.command()
def tables(data_root: DataRootOpt = None) -> None:
    """Print every table's row count and where it is."""
    from rich.table import Table

    from storage.layout import DataLayout
    from storage.schemas import SCHEMAS
    from storage.tables import read_table, table_exists

    layout = DataLayout(resolve_data_root(data_root))
    view = Table(title=f"tables under {layout.tables_dir}")
    view.add_column("table")
    view.add_column("rows", justify="right")
    view.add_column("file")
    for name in SCHEMAS:
        if name == "lineage":
            from storage.lineage import read_lineage

            count = str(len(read_lineage(layout)))
            where = str(layout.lineage_dir)
        elif table_exists(layout, name):
            count = str(len(_run(read_table, layout, name)))
            where = str(layout.table(name))
        else:
            count, where = "-", "(not written yet)"
        view.add_row(name, count, where)
    console.print(view)


def main() -> None:  # pragma: no cover - console script shim
    app(prog_name="dsan")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())


# Stage commands that live in their own modules register themselves on `app`.
from flows import cli_preprocess, cli_splits  # noqa: E402,F401
