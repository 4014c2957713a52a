"""`dsan server`, `dsan ui`, `dsan serve`: a Prefect server on loopback over the data root's
database, and scheduled retraining from one long-running process.

`dsan server` and `dsan ui` start the same thing (`prefect server start` on 127.0.0.1 with
PREFECT_HOME, so its SQLite database, under the data root); `ui` insists on the database
that `dsan run` already wrote there, `server` is where schedules, workers and `dsan serve`
connect. Every process started here has telemetry off (DO_NOT_TRACK=1, server analytics
off) whatever the caller's environment says.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from dsan_core.errors import ConfigError, ServerError
from flows.cli.app import (
    DataRootOpt,
    MasksOpt,
    ProfileOpt,
    app,
    call,
    console,
    err,
    fail,
    load_config,
    profile_path,
)
from flows.runtime import check_data_root, prefect_environment, resolve_data_root
from storage.layout import DataLayout

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 4200
#: Deployment names, the same as in deployments/prefect.yaml (serving replaces those).
PIPELINE_DEPLOYMENT = "dsan-pipeline"
RETRAIN_DEPLOYMENT = "dsan-retrain"
#: Seconds a fresh server gets to answer (migrating a new SQLite database takes ~10 s).
STARTUP_TIMEOUT = 120.0
#: Environment of every Prefect process dsan starts: nothing phones home.
NO_TELEMETRY = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
_DATABASE_URL_VARS = ("PREFECT_SERVER_DATABASE_CONNECTION_URL",
                      "PREFECT_API_DATABASE_CONNECTION_URL")

PortOpt = Annotated[int, typer.Option("--port", help="port on 127.0.0.1")]


def api_url(port: int) -> str:
    return f"http://{LOOPBACK}:{port}/api"


def database_file(root: Path) -> Path:
    """The SQLite database of the data root's Prefect (the embedded API and `dsan server`)."""
    return DataLayout(root).prefect_home / "prefect.db"


def server_command(port: int) -> list[str]:
    return [sys.executable, "-m", "prefect", "server", "start", "--host", LOOPBACK,
            "--port", str(port), "--analytics-off"]


def server_environment(root: Path, port: int, *, own_database: bool,
                       base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of `prefect server start` over the data root.

    PREFECT_HOME is the data root's, whatever the caller has set (that is the point of
    --data-root). `own_database` also drops a configured database URL, so the server
    opens `<root>/prefect/prefect.db` (`dsan ui`); otherwise a PostgreSQL URL in
    PREFECT_API_DATABASE_CONNECTION_URL wins (`dsan server` of a team). The API URL is the
    server's own, so the UI it serves talks to it and not to another configured server.
    """
    env = dict(os.environ if base is None else base)
    if own_database:
        for name in _DATABASE_URL_VARS:
            env.pop(name, None)
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = (
            f"sqlite+aiosqlite:///{database_file(root)}")
    env.update(NO_TELEMETRY)
    env["PREFECT_HOME"] = str(DataLayout(root).prefect_home)
    env["PREFECT_API_URL"] = api_url(port)
    env.pop("PREFECT_UI_API_URL", None)
    return env


def check_port_free(port: int) -> None:
    """ConfigError unless `port` can be bound on loopback (Prefect would fail later, and
    less clearly)."""
    if not 0 < port < 65536:
        raise ConfigError(f"expected a port between 1 and 65535 (--port), found {port}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            raise ConfigError(f"port {port} on {LOOPBACK} is in use (a server already "
                              "running there?): pick another with --port") from None


def server_answers(url: str, timeout: float = 2.0) -> bool:
    """Whether a Prefect API answers its health check at `url` (…/api)."""
    import httpx

    try:
        return httpx.get(f"{url.rstrip('/')}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def wait_until_up(process: subprocess.Popen[bytes], url: str, log: Path,
                  timeout: float = STARTUP_TIMEOUT) -> None:
    """Return once the server answers; ServerError when it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while not server_answers(url):
        if process.poll() is not None:
            raise ServerError(f"prefect server start exited with code {process.returncode} "
                              f"before answering; its output is in {log}")
        if time.monotonic() > deadline:
            raise ServerError(f"the Prefect server did not answer within {timeout:.0f} s; "
                              f"its output is in {log}")
        time.sleep(0.5)


def stop(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """Stop the server we started: SIGTERM (uvicorn shuts down gracefully), SIGKILL after
    `grace` s. A Ctrl-C in the terminal has already reached it (same process group), so it
    gets a moment to finish that first: a second SIGINT would make uvicorn force-quit."""
    for sent in (None, signal.SIGTERM, signal.SIGKILL):
        if sent is not None:
            process.send_signal(sent)
        try:
            process.wait(timeout=3.0 if sent is None else grace)
            return
        except subprocess.TimeoutExpired:
            continue


def run_server(root: Path, port: int, *, own_database: bool,
               announce: Callable[[], None]) -> None:
    """Start `prefect server start` over the data root, `announce` once it answers, and
    wait for it; Ctrl-C (or SIGTERM) stops it. Its output goes to a log file beside its
    database: its banner suggests `prefect config set`, which would write a profile
    outside the data root."""
    check_port_free(port)
    layout = DataLayout(root)
    layout.prefect_home.mkdir(parents=True, exist_ok=True)
    log_path = layout.prefect_home / "server.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(server_command(port), stdout=log, stderr=subprocess.STDOUT,
                                   env=server_environment(root, port,
                                                          own_database=own_database),
                                   cwd=layout.prefect_home)
    # SIGTERM (a service manager stopping dsan) takes the same way out as Ctrl-C.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        wait_until_up(process, api_url(port), log_path)
        announce()
        _print(f"server log: {log_path}; Ctrl-C stops the server")
        code = process.wait()
        if code != 0:
            raise ServerError(f"the Prefect server stopped with code {code}; its output is "
                              f"in {log_path}")
    except KeyboardInterrupt:
        console.print("stopping the Prefect server", markup=False)
    finally:
        stop(process)
        signal.signal(signal.SIGTERM, previous)


def _print(*lines: str) -> None:
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _database_in_use(root: Path) -> str:
    if any(os.environ.get(name) for name in _DATABASE_URL_VARS):
        return "the database in PREFECT_API_DATABASE_CONNECTION_URL"
    return str(database_file(root))


@app.command(rich_help_panel="Orchestration")
def server(port: PortOpt = DEFAULT_PORT, data_root: DataRootOpt = None) -> None:
    """Start a Prefect server on 127.0.0.1 (schedules, workers, `dsan serve`, the UI), its
    database under the data root; telemetry off."""
    root = resolve_data_root(data_root)
    call(check_data_root, root)
    url = api_url(port)

    def announce() -> None:
        _print(f"Prefect server on http://{LOOPBACK}:{port} (database: "
               f"{_database_in_use(root)}; telemetry off)",
               "point dsan, workers and prefect commands at it in every shell:",
               f"  export PREFECT_API_URL={url}")

    call(run_server, root, port, own_database=False, announce=announce)


@app.command(rich_help_panel="Orchestration")
def ui(port: PortOpt = DEFAULT_PORT, data_root: DataRootOpt = None) -> None:
    """Browse every past run of the data root (flow and task runs, logs, artifacts) in the
    Prefect UI, served on 127.0.0.1 over the data root's own database."""
    root = resolve_data_root(data_root)
    if not database_file(root).is_file():
        fail(ConfigError("no Prefect database under the data root yet (expected "
                         "prefect/prefect.db, written by dsan run): run dsan run first, or "
                         "give --data-root"))
    configured = os.environ.get("PREFECT_API_URL")

    def announce() -> None:
        _print(f"Prefect UI over {database_file(root)}: http://{LOOPBACK}:{port}",
               "every run of dsan on this data root, with its task runs, logs and artifacts;",
               f"to watch a dsan run live, run it with PREFECT_API_URL={api_url(port)}")
        if configured and configured.rstrip("/") != api_url(port):
            _print("note: PREFECT_API_URL is set in this shell; runs made with it are "
                   "recorded by that server, not in this database")

    call(run_server, root, port, own_database=True, announce=announce)


@app.command(rich_help_panel="Orchestration")
def serve(
    cron: Annotated[str | None, typer.Option(
        "--cron", help="retraining schedule (default: the profile's retrain.cron, "
                       "'0 3 * * 0' = Sundays 03:00)")] = None,
    timezone: Annotated[str, typer.Option(
        "--timezone", help="IANA time zone of the schedule, e.g. Europe/Berlin")] = "UTC",
    dicom_root: Annotated[Path | None, typer.Option(
        "--dicom-root", help="the drop folder of new studies (default: retrain.drop_dicom_root; "
                             "its path is stored in Prefect's database)")] = None,
    labels: Annotated[Path | None, typer.Option(
        "--labels", help="the drop's labels (default: retrain.drop_labels)")] = None,
    masks: MasksOpt = None,
    profile: ProfileOpt = "demo",
    data_root: DataRootOpt = None,
) -> None:
    """Retrain on a schedule from this one process (needs a Prefect server: dsan server);
    also serves the whole pipeline on demand. Runs one flow at a time."""
    api = os.environ.get("PREFECT_API_URL")
    root = resolve_data_root(data_root)
    if not api:
        fail(ConfigError(
            "dsan serve needs a Prefect server (schedules do not run on the ephemeral API): "
            f"start one with `dsan server --data-root {root}` and export "
            f"PREFECT_API_URL={api_url(DEFAULT_PORT)}, or run `prefect server start --host "
            f"{LOOPBACK}` with PREFECT_HOME={DataLayout(root).prefect_home}"))
        return
    config = call(load_config, profile)
    call(check_data_root, root)
    prefect_environment(root)
    if not server_answers(api, timeout=5.0):
        fail(ServerError(f"no Prefect server answers at PREFECT_API_URL={api}: start it with "
                         f"`dsan server --data-root {root}`"))
    schedule = call(_cron_schedule, cron or config.retrain.cron, timezone)
    drop = call(_drop, config, dicom_root, labels, masks)
    call(_check_not_deployed_to_a_pool)
    base = {"profile": _profile_parameter(profile), "data_root": str(root)}
    _serve(schedule, base, drop, api)


def _cron_schedule(cron: str, timezone: str) -> Any:
    from prefect.client.schemas.schedules import CronSchedule

    try:
        return CronSchedule(cron=cron, timezone=timezone)
    except ValueError:
        raise ConfigError(f"expected a cron schedule like '0 3 * * 0' (--cron or retrain.cron) "
                          f"and an IANA time zone (--timezone), found {cron!r} and "
                          f"{timezone!r}") from None


def _drop(config: Any, dicom_root: Path | None, labels: Path | None,
          masks: Path | None) -> dict[str, str | None]:
    """The drop's parameters, absolute (the runs start in other working directories)."""
    folder, drop_labels, drop_masks = config.retrain.drop(dicom_root, labels, masks)
    if not folder.is_dir():
        # Not an error: the folder may be created before the first scheduled run.
        err.print("warning: the drop folder does not exist yet; a scheduled run fails "
                  "until it does", markup=False, highlight=False)
    return {"dicom_root": str(folder), "labels": str(drop_labels),
            "masks": str(drop_masks) if drop_masks else None}


def _check_not_deployed_to_a_pool() -> None:
    """ConfigError when prefect.yaml's deployments (same names) are on the server: serving
    would take over their schedule and parameters but not their work pool, so a worker of
    that pool and this process would both pick up their runs."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        for name in (RETRAIN_DEPLOYMENT, PIPELINE_DEPLOYMENT):
            try:
                existing = client.read_deployment_by_name(f"{name}/{name}")
            except ObjectNotFound:
                continue
            if existing.work_pool_name:
                raise ConfigError(
                    f"deployment {name}/{name} is deployed to work pool "
                    f"{existing.work_pool_name!r} (deployments/prefect.yaml): use its workers, "
                    f"or delete it first to serve it here: prefect deployment delete "
                    f"{name}/{name}")


def _profile_parameter(profile: str) -> str:
    path = profile_path(profile)
    return str(path.absolute()) if Path(profile).suffix in {".yaml", ".yml"} else profile


def _serve(schedule: Any, base: dict[str, str], drop: dict[str, str | None],
           api: str) -> None:
    from prefect import serve as prefect_serve
    from prefect.deployments.runner import EntrypointType

    from flows.entrypoints import pipeline_deployment, retrain_deployment

    # Module-path entrypoints: the runs import the installed dsan, wherever this started.
    module = EntrypointType.MODULE_PATH
    retrain = retrain_deployment.to_deployment(
        RETRAIN_DEPLOYMENT, schedules=[schedule], parameters={**base, **drop}, tags=["dsan"],
        entrypoint_type=module)
    pipeline = pipeline_deployment.to_deployment(
        PIPELINE_DEPLOYMENT, parameters=base, tags=["dsan"], entrypoint_type=module)
    _print(f"serving on {api} (profile {base['profile']}, data root {base['data_root']}):",
           f"  {RETRAIN_DEPLOYMENT}/{RETRAIN_DEPLOYMENT}: cron '{schedule.cron}' "
           f"({schedule.timezone})",
           f"  {PIPELINE_DEPLOYMENT}/{PIPELINE_DEPLOYMENT}: on demand, e.g. prefect deployment "
           f"run {PIPELINE_DEPLOYMENT}/{PIPELINE_DEPLOYMENT} --param dicom_root=DIR "
           "--param labels=FILE",
           f"retrain now: prefect deployment run {RETRAIN_DEPLOYMENT}/{RETRAIN_DEPLOYMENT}",
           "one run at a time; Ctrl-C stops serving and pauses the schedule")
    try:
        # limit=1: one data root takes one run at a time (its lock); more wait their turn.
        prefect_serve(retrain, pipeline, limit=1, print_starting_message=False)
    except KeyboardInterrupt:
        console.print("stopped serving", markup=False)
