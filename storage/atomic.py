"""Atomic writes: a temp file in the destination folder, then `os.replace`.

A reader never sees a half-written file: either the old bytes or the new ones.
A killed run leaves at most a `.tmp-*` file behind, which `clean_temp_files`
removes and which no reader ever opens.

Outputs get the mode a newly created file gets under the process's umask (0644 under
umask 022, 0664 under 002), not mkstemp's 0600: a data root shared by a team must be
readable by the team.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEMP_PREFIX = ".tmp-"
_umask_lock = threading.Lock()


def file_mode() -> int:
    """0o666 minus the current umask: the mode `open()` would give a new file."""
    with _umask_lock:  # reading the umask means setting it: keep other threads out
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(destination: Path) -> Iterator[Path]:
    """Yield a temp path beside `destination` (same suffixes); rename it on success."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(destination.suffixes)
    fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=suffix, dir=destination.parent)
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        os.chmod(temp, file_mode())
        os.replace(temp, destination)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def write_bytes(destination: Path, data: bytes, *, durable: bool = True) -> None:
    """`durable`: fsync before the rename, so a power cut leaves the old bytes or the new
    ones. Without it (~1 ms less per file here) a power cut may leave an empty file: only
    for files whose loss is a recompute, such as the stage cache's manifests."""
    with atomic_path(destination) as temp:
        with open(temp, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())


def write_text(destination: Path, text: str, *, durable: bool = True) -> None:
    write_bytes(destination, text.encode("utf-8"), durable=durable)


def write_json(destination: Path, payload: Any, *, durable: bool = True) -> None:
    write_text(destination, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n",
               durable=durable)


def clean_temp_files(folder: Path) -> int:
    """Remove temp files a killed run left under `folder`; returns how many. Call it only
    while holding the data root's lock (storage.lock): a running writer's temp files
    look the same."""
    removed = 0
    if not folder.exists():
        return 0
    for path in folder.rglob(f"{TEMP_PREFIX}*"):
        if "prefect" in path.relative_to(folder).parts[:1]:
            continue  # Prefect's own files are Prefect's business
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed
