"""`EphemeralApi`: the CLI starts Prefect's temporary API server early, in a thread, and
Prefect's client then finds that server instead of starting its own."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.runtime import EphemeralApi


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """SubprocessASGIServer.start without a process: it records the instance started."""
    from prefect.server.api.server import SubprocessASGIServer

    started: list[Any] = []

    def start(self: Any, timeout: int | None = None) -> None:
        if not self.running:
            self.port, self.running, self.server_process = 18765, True, object()
            started.append(self)

    monkeypatch.setattr(SubprocessASGIServer, "_instances", {})
    monkeypatch.setattr(SubprocessASGIServer, "start", start)
    yield started
    # The exit hook of a fake start would stop a server that never existed (Prefect's
    # `stop` then logs to a closed terminal at the end of the session).
    atexit.unregister(EphemeralApi._stop_at_exit)


def test_the_client_uses_the_server_started_early(fake_server: list[Any]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        temporary_settings,
    )

    # No API URL (the session's test harness may have set one): the CLI's default.
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert not PREFECT_API_URL.value() and PREFECT_SERVER_EPHEMERAL_ENABLED.value()
        api = EphemeralApi()
        api.start()
        api.wait()
        assert len(fake_server) == 1
        client = get_client(sync_client=True)
    assert str(client.api_url).rstrip("/") == "http://127.0.0.1:18765/api"
    assert len(fake_server) == 1  # the client started no second server


def test_nothing_starts_when_an_api_url_is_set(fake_server: list[Any]) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        api = EphemeralApi()
        api.start()
        api.wait()
    assert fake_server == []


_EXIT_EARLY = r"""
import sys
from collections.abc import Iterator
from pathlib import Path
from flows.runtime import EphemeralApi, prefect_environment
prefect_environment(Path(sys.argv[1]))
EphemeralApi().start()
# The command fails right after its set-up (a user's mistake): the process exits while
# the server is still being started.
"""


def _processes_with(marker: str) -> list[int]:
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_a_command_that_ends_before_its_flow_leaves_no_server_running(tmp_path: Path) -> None:
    marker = f"dsan-test-{uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["DSAN_TEST_MARKER"] = marker  # inherited by the server process, if one starts
    done = subprocess.run([sys.executable, "-c", _EXIT_EARLY, str(tmp_path / "data")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 10
    while (left := _processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:  # leave nothing behind, then fail
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert left == [], "the ephemeral API server outlived the command"
