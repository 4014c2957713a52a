"""The Typer app of `dsan` and what every command shares: options, profile loading,
the embedded environment, running a flow, printing summaries.

Command modules (`flows.cli.<group>`) import this module and register on `app`;
this module imports none of them (`flows.cli` imports them all). Flow modules are
imported lazily inside commands, after `prefect_environment` has set the embedded
Prefect settings for the data root (Prefect reads them at import time)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from flows.runtime import EphemeralApi, check_data_root, prefect_environment, resolve_data_root

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="dsan: chest-CT DICOM to a COVID-19 vs CAP classifier (DSAN), "
                       "as cached Prefect flows.")
console = Console(stderr=False)
err = Console(stderr=True)

PROFILES_DIR = Path(__file__).resolve().parent.parent.parent / "profiles"
# Started by `stage_setup` for a command that runs a flow; `run_flow` waits for it.
EPHEMERAL_API = EphemeralApi()

ProfileOpt = Annotated[
    str, typer.Option("--profile", "-p", help="test | demo | paper, or a path to a YAML profile")
]
DataRootOpt = Annotated[
    Path | None,
    typer.Option("--data-root", help="where outputs go (default $DSAN_DATA_ROOT or ./dsan-data)"),
]
DicomRootOpt = Annotated[Path, typer.Option("--dicom-root", help="the DICOM export")]
TrainAddressOpt = Annotated[
    str | None,
    typer.Option("--train-address",
                 help="a Dask scheduler (tcp://host:8786) whose workers train the classifier "
                      "(runtime.train_address; workers declare --resources GPU=1)"),
]


def train_overrides(address: str | None) -> dict[str, Any] | None:
    """The profile overrides of `--train-address`."""
    return {"runtime": {"train_address": address}} if address else None
LabelsOpt = Annotated[Path, typer.Option("--labels", help="labels manifest CSV")]
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


def fail(error: Exception) -> None:
    """A user's mistake: one line on stderr, exit code 2."""
    err.print(f"[bold red]error:[/] {error}", markup=True, highlight=False)
    raise typer.Exit(code=2)


def call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """`fn(...)`, with dsan's own errors turned into `fail`."""
    from dsan_core.errors import DsanError

    try:
        return fn(*args, **kwargs)
    except DsanError as error:
        fail(error)


def run_flow(flow_fn: Any, *args: Any, name: str | None = None, **kwargs: Any) -> Any:
    """Run a flow (named `name` in the UI) without heartbeats; dsan errors become one
    line and exit code 2, without the engine's tracebacks above it."""
    from flows.console import user_errors_as_one_line
    from flows.runtime import quiet_flow_settings

    if name is not None:
        flow_fn = flow_fn.with_options(flow_run_name=name)
    EPHEMERAL_API.wait()
    with quiet_flow_settings(), user_errors_as_one_line():
        return call(flow_fn, *args, **kwargs)


def print_lines(lines: list[str]) -> None:
    # Summaries hold "[stage]" prefixes and ids: print them verbatim, no rich markup.
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def stage_setup(profile: str, data_root: Path | None,
                overrides: dict[str, Any] | None = None, *,
                runs_flow: bool = True,
                check_inputs: Callable[[Any, Any], object] | None = None) -> tuple[Path, Any]:
    """The data root (checked, locked for this process, leftovers of killed runs removed,
    with the embedded Prefect environment set for it) and the config; progress lines on
    the terminal. The lock comes first: a second run must not even start Prefect on the
    data root's database (nor read tables another run is writing). `check_inputs(config,
    layout)` then checks the command's own inputs (an export, the tables it reads) before
    Prefect starts: a user's mistake there is one line in a second. A command that
    `runs_flow` has the ephemeral API started here, to boot while it imports its flow."""
    from flows.console import configure_console
    from storage.atomic import clean_temp_files
    from storage.layout import DataLayout
    from storage.lock import acquire

    root = resolve_data_root(data_root)
    config = call(load_config, profile, overrides)
    call(check_data_root, root)
    layout = DataLayout(root)
    call(acquire, layout, command=" ".join(sys.argv[:2]) or "dsan")
    clean_temp_files(root)
    if check_inputs is not None:
        call(check_inputs, config, layout)
    prefect_environment(root)
    configure_console()
    if runs_flow:
        EPHEMERAL_API.start()
    return root, config


def ingested(_config: Any, layout: Any) -> None:
    """`check_inputs` of the commands after ingestion: they all read the scans table, so
    a data root without it (a mistyped --data-root, say) is refused in a second rather
    than after Prefect's server has started on it."""
    from storage.tables import require_tables

    require_tables(layout, "scans")


def print_stage_times(root: Path, run_id: str, total_seconds: float | None = None) -> None:
    """The wall time of every stage of a run, from its lineage rows."""
    from rich.table import Table

    from storage.layout import DataLayout
    from storage.lineage import stage_times

    times = stage_times(DataLayout(root), run_id)
    view = Table(title=f"wall time per stage (run {run_id})")
    view.add_column("stage")
    view.add_column("seconds", justify="right")
    view.add_column("cache hit")
    # A stage with several rows (one per trained model, say) shows their total.
    for stage, rows in times.groupby("stage", sort=False):
        hits = int(rows["cache_hit"].sum())
        hit = ("yes" if hits == len(rows) else "no" if hits == 0
               else f"{hits} of {len(rows)}")
        name = str(stage) if len(rows) == 1 else f"{stage} ({len(rows)})"
        view.add_row(name, f"{rows['seconds'].sum():.1f}", hit)
    if total_seconds is not None:
        view.add_row("total (with start-up)", f"{total_seconds:.1f}", "")
    console.print(view)
