"""Functions that run on Dask workers: plain, picklable, and free of Prefect.

Workers import this module only (not the task modules, which import prefect), so a
worker process starts without Prefect's import cost. Every function receives paths
and small arguments and returns a small manifest: volumes never cross the scheduler.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from dsan_core.config import PreprocessConfig
from dsan_core.dicom import decode_series, index_headers
from dsan_core.preprocessing import preprocess_scan
from storage.hashing import sha256_file
from storage.volumes import read_image, write_geometry, write_image, write_npy

#: The files `preprocess_and_write` writes per scan.
PREPROCESS_OUTPUTS = ("input", "lung", "infection", "geometry")


# --- ingestion -------------------------------------------------------------------------

def index_chunk(paths: list[str], known: list[str | None]) -> tuple[pd.DataFrame, list, list]:
    """Header records + failures + content hash of every file of a chunk."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns loudly about odd real-world files
        frame, failures = index_headers([Path(p) for p in paths])
    hashes: list[str | None] = []
    for path, hash_ in zip(paths, known, strict=True):
        if hash_ is None and os.path.isfile(path):
            try:
                hash_ = sha256_file(Path(path))
            except OSError:
                hash_ = None
        hashes.append(hash_)
    return frame, failures, hashes


def decode_and_write(paths: list[str], destination: str, scan_id: str) -> dict[str, Any]:
    """Decode one series to HU and write it as NIfTI; returns its small manifest."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        volume = decode_series([Path(p) for p in paths], scan_id=scan_id)
    write_image(volume.to_sitk(), Path(destination))
    z, y, x = volume.hu.shape
    return {
        "sha256": sha256_file(Path(destination)),
        "shape": [int(z), int(y), int(x)],
        "spacing": [float(s) for s in volume.spacing],
    }


# --- pre-processing --------------------------------------------------------------------

_threads_lock = threading.Lock()
_threads_users = 0
_threads_saved: tuple[int, int] = (0, 0)


@contextlib.contextmanager
def _limited_threads(n: int) -> Iterator[None]:
    """torch and SimpleITK at `n` threads while any scan of this process runs.

    Both settings are process-wide; a count makes concurrent worker threads of one
    process agree and restores the previous values when the last one finishes.
    """
    import SimpleITK as sitk
    import torch

    global _threads_users, _threads_saved
    with _threads_lock:
        if _threads_users == 0:
            _threads_saved = (torch.get_num_threads(),
                              sitk.ProcessObject.GetGlobalDefaultNumberOfThreads())
            torch.set_num_threads(n)
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(n)
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_saved[0])
                sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(_threads_saved[1])


def preprocess_and_write(volume: str, lung: str, infection: str, destinations: dict[str, str],
                         scan_id: str, config: PreprocessConfig,
                         threads: int = 1) -> dict[str, Any]:
    """Pre-process one scan from its NIfTI files and write the four outputs atomically.

    Returns {"sha256": {output name: hash}, "shape": [z, y, x], "scale_factor": f}.
    One thread per scan was measured faster than sharing cores inside a scan.
    """
    with _limited_threads(threads):
        result = preprocess_scan(read_image(Path(volume)), read_image(Path(lung)),
                                 read_image(Path(infection)), config, scan_id=scan_id)
    write_npy(Path(destinations["input"]), result.input)
    write_npy(Path(destinations["lung"]), result.lung)
    write_npy(Path(destinations["infection"]), result.infection)
    write_geometry(Path(destinations["geometry"]), result.geometry.to_dict())
    z, y, x = result.input.shape
    return {
        "sha256": {name: sha256_file(Path(destinations[name])) for name in PREPROCESS_OUTPUTS},
        "shape": [int(z), int(y), int(x)],
        "scale_factor": float(result.geometry.scale_factor),
    }
