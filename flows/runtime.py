"""The embedded runtime: local Prefect API under the data root, and Dask placement.

`prefect_environment` must run before prefect is imported (Prefect reads its
settings at import time); the CLI calls it first thing. Defaults, all overridable
by the user's own PREFECT_* variables:

- PREFECT_HOME under the data root, so nothing is written outside it;
- nothing phones home: server analytics off, and Prefect's client telemetry off
  (DO_NOT_TRACK=1; without it, importing prefect in a terminal prints a notice and
  sends usage events);
- results not persisted: tasks return small manifests, and the stage cache
  (storage/stage_cache.py) is what makes reruns cheap;
- logs at INFO for the Prefect UI, but the terminal shows only warnings from Prefect
  plus dsan's own progress lines (flows.console);
- no PREFECT_API_URL: the ephemeral API (a temporary server per process, ~4 s to answer,
  ~10 s on a new data root, whose database gets Prefect's migrations first). The CLI
  starts it early (`EphemeralApi`), so that it comes up while the command imports its
  flows.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dsan_core.config import DaskConfig
from storage.layout import DataLayout

DATA_ROOT_ENV = "DSAN_DATA_ROOT"
DEFAULT_DATA_ROOT = Path("dsan-data")


def resolve_data_root(cli_value: Path | None) -> Path:
    if cli_value is not None:
        return cli_value.absolute()
    env = os.environ.get(DATA_ROOT_ENV)
    return Path(env).absolute() if env else DEFAULT_DATA_ROOT.absolute()


def check_data_root(data_root: Path) -> None:
    """ConfigError unless the data root is (or can become) a writable folder."""
    from dsan_core.errors import ConfigError

    if data_root.exists() and not data_root.is_dir():
        raise ConfigError("expected a folder as the data root (--data-root), found a file")
    try:
        data_root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"cannot create the data root (--data-root): {error.strerror}") from None
    if not os.access(data_root, os.W_OK | os.X_OK):
        raise ConfigError("the data root (--data-root) is not writable by this user")


def prefect_environment(data_root: Path) -> dict[str, str]:
    """Set the embedded defaults in os.environ (user values win); return what was set."""
    layout = DataLayout(data_root)
    defaults = {
        "PREFECT_HOME": str(layout.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        # matplotlib would otherwise write its font cache under the home folder.
        "MPLCONFIGDIR": str(layout.matplotlib_cache),
    }
    applied = {}
    for name, value in defaults.items():
        if name not in os.environ:
            os.environ[name] = value
            applied[name] = value
    layout.prefect_home.mkdir(parents=True, exist_ok=True)
    layout.matplotlib_cache.mkdir(parents=True, exist_ok=True)
    return applied


def shared_prefect_api() -> bool:
    """Whether other runs can use the same Prefect API: PREFECT_API_URL is set (a `dsan
    server`, a worker's, the test harness). Without it the API is the embedded one of
    this process, on the data root's own database, which has one writer (the lock)."""
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


class EphemeralApi:
    """Prefect's ephemeral API server, started in a background thread.

    Without PREFECT_API_URL, Prefect's client starts a temporary API server (its own
    process) when the first flow runs and waits until it answers. `start` begins that
    wait early, right after the embedded environment is set. The server then boots while
    the command imports its flows (~3-8 s). `wait` blocks until it answers.

    There is one such server per process (Prefect keeps it per port), so the client
    finds it running and starts no other. A failed start is left to the client, which
    starts it again and reports its own error. With PREFECT_API_URL set (a `dsan
    server`, a worker, the test harness) this does nothing.

    A command that ends before its flow (a user's mistake found after the set-up) may end
    while the server is still being started: at exit the server is stopped all the same,
    never left running on the data root's database.
    """

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        from prefect.settings import PREFECT_SERVER_EPHEMERAL_ENABLED

        if shared_prefect_api() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
            return
        # Imported here, on the calling thread: imports stay off the background thread.
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()  # the one the client will find (no side effects)

        def boot() -> None:
            with contextlib.suppress(Exception):  # the client retries and reports
                server.start()

        # The caller's settings context (Prefect's settings follow contextvars).
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(boot,),
                                        name="dsan-ephemeral-api", daemon=True)
        # Registered before the thread starts, so it runs after Prefect's own exit hook
        # (which its start registers once the server process exists).
        atexit.register(self._stop_at_exit, server, self._thread)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()

    @staticmethod
    def _stop_at_exit(server: Any, thread: threading.Thread) -> None:
        """Stop a server whose start is still under way. A start that has not yet made
        the process is waited for (milliseconds: choosing a port). One that Prefect's
        hook (run before this one) stopped ends its thread at its next health check.
        `stop` is Prefect's own, a no-op on a stopped server."""
        deadline = time.monotonic() + 10.0
        while (thread.is_alive() and server.server_process is None
               and time.monotonic() < deadline):
            time.sleep(0.01)
        with contextlib.suppress(Exception):
            server.stop()


@contextlib.contextmanager
def quiet_flow_settings() -> Iterator[None]:
    """Switch off flow heartbeats (>= 1 s per flow run otherwise); only settable here."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


class _LazyCluster:
    """A local Dask cluster started on the first call (which returns its address)."""

    def __init__(self, config: DaskConfig, scratch: Path | None) -> None:
        self._config, self._scratch = config, scratch
        self._stack = contextlib.ExitStack()
        self._address: str | None = None

    def __call__(self) -> str:
        if self._address is None:
            self._address = self._stack.enter_context(_local_cluster(self._config,
                                                                     self._scratch))
        return self._address

    def close(self) -> None:
        self._stack.close()


@contextlib.contextmanager
def dask_scheduler(config: DaskConfig, scratch: Path | None = None
                   ) -> Iterator[str | Callable[[], str]]:
    """Yield where Dask work goes: the configured scheduler's address, or a callable that
    starts a local cluster on first use (a stage that finds everything cached starts none).

    Flows decide placement and pass only this to tasks; tasks connect a client and
    submit plain functions (no Prefect inside Dask workers, so no temporary Prefect
    server per worker process). `scratch` is the workers' spill folder (under the data
    root, so nothing is written elsewhere).
    """
    if config.address:
        yield config.address
        return
    lazy = _LazyCluster(config, scratch)
    try:
        yield lazy
    finally:
        lazy.close()


@contextlib.contextmanager
def _local_cluster(config: DaskConfig, scratch: Path | None) -> Iterator[str]:
    import logging

    from distributed import LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)
    # Loopback only; threads-only clusters use the in-process transport (no host).
    network = {"host": "127.0.0.1"} if config.processes else {}
    with LocalCluster(
        n_workers=config.n_workers,
        threads_per_worker=config.threads_per_worker,
        processes=config.processes,
        memory_limit=config.memory_limit,
        dashboard_address=":0",
        silence_logs=logging.WARNING,
        local_directory=str(scratch) if scratch is not None else None,
        **network,
    ) as cluster:
        yield cluster.scheduler_address

def off_main_thread(task: Any, *args: Any) -> Any:
    """Run a torch-heavy task on a task-runner thread of the calling flow, which ends with
    that flow, and return its result (its exception, if it fails).

    torch's CPU kernels run on libgomp, whose worker pool belongs to the first thread
    that runs a parallel op and lives as long as that thread. A pool left on the
    process's main thread (the VB-Net trained there) stays for the whole run; with more
    OpenMP threads than cores, libgomp stops spinning between parallel regions and
    sleeps on a futex instead. Inside `dsan run` on 2 cores every later classifier epoch
    then took 1.5x as long (30,000 context switches per model instead of 150;
    benchmarks/README.md, "The demo on the issue-24 cohort"). A flow's task-runner
    threads end with it, and so do their pools.
    """
    return task.submit(*args).result()


def run_name(stage: str, profile: str) -> str:
    """A flow run's name in the UI and the logs: stage, profile, local date and time."""
    from datetime import datetime

    return f"{stage} {profile} {datetime.now().astimezone():%Y-%m-%d %H:%M:%S}"
