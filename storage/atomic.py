"""Atomic writes: a temp file in the destination folder, then `os.replace`.

A reader never sees a half-written file: either the old bytes or the new ones.
A killed run leaves at most a `.tmp-*` file behind, which `clean_temp_files`
removes and which no reader ever opens.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEMP_PREFIX = ".tmp-"


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
        os.replace(temp, destination)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def write_bytes(destination: Path, data: bytes) -> None:
    with atomic_path(destination) as temp:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def write_text(destination: Path, text: str) -> None:
    write_bytes(destination, text.encode("utf-8"))


def write_json(destination: Path, payload: Any) -> None:
    write_text(destination, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def clean_temp_files(folder: Path) -> int:
    """Remove temp files a killed run left under `folder`; returns how many."""
    removed = 0
    if not folder.exists():
        return 0
    for path in folder.rglob(f"{TEMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed
