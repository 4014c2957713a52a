"""The Typer app of `dsan` and what every command shares: options, profile loading,
the embedded environment, running a flow, printing summaries.

Command modules (`flows.cli.<group>`) import this module and register on `app`;
this module imports none of them (`flows.cli` imports them all). Flow modules are
imported lazily inside commands, after `prefect_environment` has set the embedded
Prefect settings for the data root (Prefect reads them at import time)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from flows.runtime import prefect_environment, resolve_data_root

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="dsan: chest-CT DICOM to a COVID-19 vs CAP classifier (DSAN), "
                       "as cached Prefect flows.")
console = Console(stderr=False)
err = Console(stderr=True)

PROFILES_DIR = Path(__file__).resolve().parent.parent.parent / "profiles"

ProfileOpt = Annotated[
    str, typer.Option("--profile", "-p", help="test | demo | paper, or a path to a YAML profile")
]
DataRootOpt = Annotated[
    Path | None,
    typer.Option("--data-root", help="where outputs go (default $DSAN_DATA_ROOT or ./dsan-data)"),
]
DicomRootOpt = Annotated[Path, typer.Option("--dicom-root", help="the DICOM export")]
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


def run_flow(flow_fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a flow without heartbeats; dsan errors become exit code 2."""
    from flows.runtime import quiet_flow_settings

    with quiet_flow_settings():
        return call(flow_fn, *args, **kwargs)


def print_lines(lines: list[str]) -> None:
    # Summaries hold "[stage]" prefixes and ids: print them verbatim, no rich markup.
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def stage_setup(profile: str, data_root: Path | None,
                overrides: dict[str, Any] | None = None) -> tuple[Path, Any]:
    """The data root (with the embedded Prefect environment set for it) and the config."""
    root = resolve_data_root(data_root)
    prefect_environment(root)
    return root, call(load_config, profile, overrides)
