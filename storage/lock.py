"""One writer per data root: an advisory lock on `<root>/cache/dsan.lock`.

The kernel holds the lock (`fcntl.flock`) for as long as the process lives, so the lock
of a killed run is released with it: a stale lock is taken over without guessing. The
file says who holds it (pid, host, start time, command) for the message a second run
gets. Reentrant within a process: a flow that takes the lock inside a CLI command that
already holds it goes on.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from dsan_core.errors import LockedError
from storage.layout import DataLayout

_held: dict[Path, tuple[IO[str], int]] = {}
_guard = threading.Lock()


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, json.JSONDecodeError):
        return "another process"
    return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')} "
            f"({info.get('command', 'dsan')})")


def acquire(layout: DataLayout, *, command: str, wait_seconds: float = 0.0) -> None:
    """Hold the data root's lock until `release` or process exit; LockedError naming the
    holder when another process keeps it for longer than `wait_seconds`."""
    path = layout.lock_file
    with _guard:
        if path in _held:
            handle, count = _held[path]
            _held[path] = (handle, count + 1)
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - kept open while the lock is held
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = _holder(path)
                handle.close()
                raise LockedError(f"the data root is in use by {holder}; wait for it to "
                                  "finish (a killed run's lock is released with it)") from None
            time.sleep(0.5)
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": datetime.now(UTC).isoformat(timespec="seconds"),
                             "command": command}))
    handle.flush()
    with _guard:
        _held[path] = (handle, 1)


def release(layout: DataLayout) -> None:
    path = layout.lock_file
    with _guard:
        if path not in _held:
            return
        handle, count = _held[path]
        if count > 1:
            _held[path] = (handle, count - 1)
            return
        del _held[path]
    handle.seek(0)
    handle.truncate()
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


@contextlib.contextmanager
def data_root_lock(layout: DataLayout, *, command: str,
                   wait_seconds: float = 0.0) -> Iterator[None]:
    acquire(layout, command=command, wait_seconds=wait_seconds)
    try:
        yield
    finally:
        release(layout)
