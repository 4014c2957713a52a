"""Pre-processing stage: HU volumes + lung/infection masks -> fixed-grid network inputs.

Reads the `scans` and `infection` tables, writes per scan
`preprocessed/<config>/<scan_id>/{input,lung,infection}.npy + geometry.json` and the
`preprocessed` table. Each scan is cached by content (`preprocess-scan` manifests keyed
by the volume, lung and infection file hashes, the scan id, the config fingerprint and
`VERSION`), so adding 5 scans pre-processes 5.

Parallelism is plain Dask inside this one Prefect task, not a `DaskTaskRunner`: worker
processes of a DaskTaskRunner would each start a temporary Prefect server. The flow
hands over a scheduler address; the misses are submitted as
`tasks.workers.preprocess_and_write`, which receives PATHS and returns a small manifest (hashes,
shape, scale factor), so volumes never travel through the scheduler. Each worker thread
holds one scan at a time, which bounds a worker's memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dsan_core.config import PreprocessConfig
from dsan_core.errors import DsanError
from storage.hashing import hash_json, stat_key
from storage.schemas import PREPROCESSED
from storage.stage_cache import Manifest, stage_key
from storage.tables import read_table, write_table
from tasks.contract import StageRun, cached_stage
from tasks.dask_map import map_on_dask
from tasks.workers import PREPROCESS_OUTPUTS as OUTPUTS
from tasks.workers import preprocess_and_write

STAGE = "preprocess"
SCAN_STAGE = "preprocess-scan"
#: Bump when the outputs would change for the same inputs and config.
VERSION = "1"
MASK_COLUMNS = ["scan_id", "lung_path", "lung_hash", "infection_path", "infection_hash"]


# --- the task -------------------------------------------------------------------------


@task(name="preprocess_task", cache_policy=NO_CACHE, persist_result=False)
def preprocess_task(config: PreprocessConfig, data_root: Path, dask_address: str,
                    run_id: str | None = None) -> dict[str, Any]:
    """Pre-process every scan with masks (cache misses on Dask); write `preprocessed`."""
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:
        return _preprocess(run, config, dask_address, logger)


def _inputs(run: StageRun) -> pd.DataFrame:
    scans = read_table(run.layout, "scans")[["scan_id", "volume_path", "volume_hash"]]
    masks = read_table(run.layout, "infection")[MASK_COLUMNS]
    return scans.merge(masks, on="scan_id", how="left").sort_values("scan_id", ignore_index=True)


def _preprocess(run: StageRun, config: PreprocessConfig, address: str,
                logger: Any) -> dict[str, Any]:
    config_hash = config.fingerprint()
    layout = run.layout
    failures: dict[str, str] = {}
    manifests: dict[str, Manifest] = {}
    todo: list[tuple[str, str, dict[str, str]]] = []  # (scan id, key, destinations)
    args: list[tuple[Any, ...]] = []
    stale = 0
    for row in _inputs(run).itertuples(index=False):
        scan_id = str(row.scan_id)
        if pd.isna(row.lung_path):
            failures[scan_id] = "no lung/infection masks in the infection table"
            continue
        sources = {"volume": layout.resolve(str(row.volume_path)),
                   "lung": layout.resolve(str(row.lung_path)),
                   "infection": layout.resolve(str(row.infection_path))}
        missing = [name for name, path in sources.items() if not path.is_file()]
        if missing:
            failures[scan_id] = f"input file missing: {', '.join(missing)}"
            continue
        hashes = {name: run.memo.hash_file(path) for name, path in sources.items()}
        recorded = {"volume": row.volume_hash, "lung": row.lung_hash,
                    "infection": row.infection_hash}
        stale += int(any(hashes[name] != recorded[name] for name in hashes))
        key = stage_key(SCAN_STAGE, VERSION, config_hash, {**hashes, "scan_id": scan_id})
        cached = run.cache.lookup(SCAN_STAGE, key)
        if cached is not None:
            manifests[scan_id] = cached
            continue
        destinations = {name: str(layout.preprocessed_file(config_hash, scan_id, name))
                        for name in OUTPUTS}
        todo.append((scan_id, key, destinations))
        args.append((str(sources["volume"]), str(sources["lung"]), str(sources["infection"]),
                     destinations, scan_id, config))
    if stale:
        logger.warning("%d scan(s) have input files whose content differs from the hash in "
                       "their table; the file content is used", stale)
    n_cached = len(manifests)

    results = map_on_dask(address, preprocess_and_write, args,
                          description="pre-processing scans", artifact_key="preprocess-progress")
    for (scan_id, key, destinations), result in zip(todo, results, strict=True):
        if isinstance(result, BaseException):
            message = str(result) if isinstance(result, DsanError) else type(result).__name__
            failures[scan_id] = message
            continue
        outputs = {}
        for name in OUTPUTS:
            path = Path(destinations[name])
            run.memo.update({stat_key(path): result["sha256"][name]})
            outputs[name] = {"path": layout.relative(path), "sha256": result["sha256"][name]}
        manifest = Manifest(SCAN_STAGE, key, outputs,
                            {"scan_id": scan_id, "shape": result["shape"],
                             "scale_factor": result["scale_factor"]})
        run.cache.store(manifest)
        manifests[scan_id] = manifest
    for scan_id, message in sorted(failures.items()):
        logger.warning("pre-processing failed for scan %s: %s", scan_id,
                       message.removeprefix(f"scan {scan_id}: "))

    table = pd.DataFrame([_row(config_hash, manifests[s]) for s in sorted(manifests)],
                         columns=PREPROCESSED.names)

    def write(stage_cache_key: str) -> Manifest:
        write_table(layout, "preprocessed", table)
        path = layout.table("preprocessed")
        return Manifest(STAGE, stage_cache_key, {"preprocessed": {
            "path": layout.relative(path), "sha256": run.memo.hash_file(path)}}, {})

    inputs = {"rows": hash_json(table.to_dict(orient="records")), "n_scans": str(len(table))}
    stage = cached_stage(run, stage=STAGE, version=VERSION, config_hash=config_hash,
                         inputs=inputs, compute=write, logger=logger)
    n_processed = len(manifests) - n_cached
    logger.info("pre-processing: %d processed, %d cached, %d failed", n_processed, n_cached,
                len(failures))
    return {"processed": n_processed, "cached": n_cached, "failed": len(failures),
            "failures": dict(sorted(failures.items())), "config_hash": config_hash,
            "stage": stage.to_dict()}


def _row(config_hash: str, manifest: Manifest) -> dict[str, Any]:
    z, y, x = manifest.data["shape"]
    out = manifest.outputs
    return {
        "scan_id": manifest.data["scan_id"], "config_hash": config_hash,
        "input_path": out["input"]["path"], "input_hash": out["input"]["sha256"],
        "lung_path": out["lung"]["path"], "lung_hash": out["lung"]["sha256"],
        "infection_path": out["infection"]["path"], "infection_hash": out["infection"]["sha256"],
        "geometry_path": out["geometry"]["path"],
        "shape_z": z, "shape_y": y, "shape_x": x,
        "scale_factor": float(manifest.data["scale_factor"]),
    }
