"""Content hashes, and a memo that avoids re-reading unchanged input files.

Cache keys are built from CONTENT (sha256 of bytes), never from path strings.
Hashing raw DICOM is memoised by (path, size, mtime_ns): the memo is keyed by a
sha256 of those three values, so no raw path is stored in it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from storage.atomic import atomic_path

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hash_json(payload: Any) -> str:
    """sha256 of a canonical JSON rendering (sorted keys, no whitespace)."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return sha256_bytes(text.encode())


def combine_hashes(hashes: Iterable[str]) -> str:
    """One hash for an unordered collection of content hashes."""
    return sha256_bytes("\n".join(sorted(hashes)).encode())


def stat_key(path: Path) -> str:
    """The memo key of a file: sha256 of (absolute path, size, mtime_ns)."""
    info = os.stat(path)
    raw = f"{os.path.abspath(path)}\0{info.st_size}\0{info.st_mtime_ns}"
    return sha256_bytes(raw.encode())


_MEMO_SCHEMA = pa.schema([("stat_key", pa.string()), ("sha256", pa.string())])


class FileHashMemo:
    """Maps stat keys to content hashes; persisted as a small Parquet file.

    Thread-safe for lookups and updates within one process; `save` merges and
    writes atomically.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._known: dict[str, str] = {}
        if path.exists():
            table = pq.read_table(path, schema=_MEMO_SCHEMA)
            self._known = dict(
                zip(table.column("stat_key").to_pylist(), table.column("sha256").to_pylist(),
                    strict=True)
            )
        self._dirty = False

    def lookup(self, key: str) -> str | None:
        with self._lock:
            return self._known.get(key)

    def update(self, entries: Mapping[str, str]) -> None:
        with self._lock:
            for key, value in entries.items():
                if self._known.get(key) != value:
                    self._known[key] = value
                    self._dirty = True

    def hash_file(self, path: Path) -> str:
        key = stat_key(path)
        known = self.lookup(key)
        if known is not None:
            return known
        value = sha256_file(path)
        self.update({key: value})
        return value

    def save(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            keys = sorted(self._known)
            table = pa.table(
                {"stat_key": keys, "sha256": [self._known[k] for k in keys]}, schema=_MEMO_SCHEMA
            )
            with atomic_path(self.path) as temp:
                pq.write_table(table, temp)
            self._dirty = False
