"""Functions that run on Dask workers: plain, picklable, and free of Prefect.

Workers import this module only (not the task modules, which import prefect), so a
worker process starts without Prefect's import cost. Every function receives paths
and small arguments and returns a small manifest: volumes never cross the scheduler.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from dsan_core.config import PreprocessConfig, TrainConfig
from dsan_core.dicom import decode_series, index_headers
from dsan_core.errors import StageError
from dsan_core.preprocessing import preprocess_scan
from dsan_core.quiet import keep_ignored
from storage.atomic import write_json
from storage.hashing import sha256_file
from storage.layout import DataLayout
from storage.volumes import read_image, write_geometry, write_image, write_npy

#: The files `preprocess_and_write` writes per scan.
PREPROCESS_OUTPUTS = ("input", "lung", "infection", "geometry")


# --- ingestion -------------------------------------------------------------------------

def _quiet_pydicom() -> None:
    """pydicom warns loudly about odd real-world files; what makes one unusable is
    quarantined with a reason. (Not `warnings.catch_warnings`: these run on several
    threads at once, see `dsan_core.quiet`.)"""
    keep_ignored(module=r"pydicom(\.|$)")


def index_chunk(paths: list[str], known: list[str | None]) -> tuple[pd.DataFrame, list, list]:
    """Header records + failures + content hash of every file of a chunk."""
    _quiet_pydicom()
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
    _quiet_pydicom()
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


# --- classifier training ---------------------------------------------------------------

#: The model folder's name: models/classifier__<training key>/.
CLASSIFIER_MODEL = "classifier"


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" where this process sees a GPU, else "cpu"; others as given, but
    a CUDA device this process cannot see is an error (a CPU worker in a GPU pool)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise StageError(f"training asked for {device}, but torch {torch.__version__} on "
                         f"{socket.gethostname()} sees no CUDA device")
    return device


def _where() -> str:
    """The Dask worker's address, or this host for a training in the task's process."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return f"local:{socket.gethostname()}"


def train_and_save(data_root: str, config: TrainConfig, device: str, key: str, fresh: bool,
                   fold: int, branch: str, train: list[Any],
                   log: Callable[[str], None] | None = None,
                   on_epoch: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Train one (fold, branch) model into models/classifier__<key>/ of the data root:
    `last.pt` after every epoch (a killed training, here or on another worker, resumes
    from it unless `fresh`), `history.json`, and `best.pt` (the kept epoch, no optimiser
    state). `train` are the fold's training `ClassifierCase`s (their loaders read the
    shared data root). Returns the model's summary: kept epoch, sizes, calibration,
    where and when it trained, and the epoch it resumed after (0: from scratch).

    Runs in the training task's process or on a Dask worker (no Prefect here); the
    task stores the manifest, so the stage cache is written by the flow alone.
    """
    import torch

    from dsan_core.classifier import branch_seed, train_classifier
    from dsan_core.classifier.network import UNCALIBRATED
    from storage.checkpoints import load_checkpoint, save_checkpoint
    from storage.lineage import code_version

    layout = DataLayout(Path(data_root))
    last = layout.checkpoint(CLASSIFIER_MODEL, key, "last")
    history_path = layout.training_history(CLASSIFIER_MODEL, key)
    resume = load_checkpoint(last) if last.exists() and not fresh else None
    placed = resolve_device(device)
    started, clock = datetime.now(UTC), time.perf_counter()

    def on_epoch_end(checkpoint: dict[str, Any], report: Any) -> None:
        save_checkpoint(checkpoint, last)
        write_json(history_path, checkpoint["history"])
        if on_epoch is not None:
            on_epoch(report)

    result = train_classifier(train, config, branch=branch,
                              seed=branch_seed(config.seed, fold, branch),
                              device=torch.device(placed), resume=resume,
                              on_epoch_end=on_epoch_end, log=log or (lambda _: None),
                              fold=fold)
    # The fold's model: kept weights, config, data (its scans) and code version; no
    # optimiser state, which only resuming needs.
    save_checkpoint({**{k: v for k, v in result.checkpoint.items()
                        if k not in ("model", "optimizer")},
                     "model_key": key, "code_version": code_version()},
                    layout.checkpoint(CLASSIFIER_MODEL, key, "best"))
    return {
        "fold": fold, "branch": branch, "best_epoch": result.best_epoch,
        "epoch_selection": config.epoch_selection, "select_auc": result.select_auc,
        "epochs": len(result.history), "seconds": time.perf_counter() - clock,
        "device": placed, "worker": _where(), "started": started.isoformat(),
        "ended": datetime.now(UTC).isoformat(),
        "resumed_after_epoch": int(resume["epoch"]) if resume is not None else 0,
        "n_train": len(train), "n_fit": result.n_fit, "n_select": result.n_select,
        "sampler_weights": result.sampler_weights,
        **result.checkpoint.get("calibration", UNCALIBRATED)}


def predict_and_save(config: TrainConfig, device: str, checkpoint: str, destination: str,
                     fold: int, branch: str, set_: str, key: str, cases: list[Any]) -> str:
    """P(COVID) of `cases` by one fold model (its `best.pt`), written as prediction rows
    (scan_id, fold, branch, set, probability, model_key) to `destination`; returns the
    file's sha256. Runs in the task's process or on a Dask worker."""
    import torch

    from dsan_core.classifier import load_classifier, predict_probabilities
    from storage.checkpoints import load_checkpoint
    from storage.tables import write_table_file

    placed = torch.device(resolve_device(device))
    network = load_classifier(load_checkpoint(Path(checkpoint)), config, placed)
    probabilities = predict_probabilities(network, cases, device=placed,
                                          batch_size=config.val_batch_size,
                                          mixed_precision=config.mixed_precision,
                                          channels_last=config.channels_last_3d)
    rows = pd.DataFrame({"scan_id": [c.scan_id for c in cases], "fold": fold, "branch": branch,
                         "set": set_, "probability": probabilities, "model_key": key})
    write_table_file(Path(destination), "predictions", rows)
    return sha256_file(Path(destination))
