"""Pre-processing stage: HU volumes + lung/infection masks -> fixed-grid network inputs.

Reads the `scans` and `infection` tables, writes per scan
`preprocessed/<config>/<scan_id>/{input,lung,infection}.npy + geometry.json` and the
`preprocessed` table. Each scan is cached by content (`preprocess-scan` manifests keyed
by the volume, lung and infection file hashes, the scan id, the config fingerprint and
`VERSION`), so adding 5 scans pre-processes 5, and each is stored as it completes.

Parallelism is plain Dask inside this one Prefect task, not a `DaskTaskRunner`: worker
processes of a DaskTaskRunner would each start a temporary Prefect server. The flow
hands over a scheduler address; the misses are submitted as
`tasks._common.workers.preprocess_and_write`, which receives PATHS and returns a small manifest
(hashes, shape, scale factor), so volumes never travel through the scheduler.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dsan_core.config import PreprocessConfig
from storage.hashing import hash_json, stat_key
from storage.schemas import PREPROCESSED
from storage.stage_cache import Manifest, artifact
from storage.tables import read_table, write_table
from tasks._common.contract import (
    DaskAddress,
    MapItem,
    StageInputs,
    StageItems,
    StageRun,
    cached_map,
    cached_stage,
)
from tasks._common.workers import PREPROCESS_OUTPUTS as OUTPUTS
from tasks._common.workers import preprocess_and_write

STAGE = "preprocess"
SCAN_STAGE = "preprocess-scan"
#: Bump when the outputs would change for the same inputs and config.
VERSION = "1"
MASK_COLUMNS = ["scan_id", "lung_path", "lung_hash", "infection_path", "infection_hash"]
#: Failures listed by scan in the summary; the rest are counted.
SHOWN_FAILURES = 5


@dataclass(frozen=True)
class PreprocessOutcome:
    stage: Manifest
    processed: int
    cached: int
    failures: dict[str, str]  # scan id -> reason
    config_hash: str

    @property
    def failed(self) -> int:
        return len(self.failures)

    def summary(self) -> list[str]:
        lines = [f"scans pre-processed {self.processed}, from cache {self.cached}, "
                 f"preprocess_failures {self.failed} (outputs under preprocessed/"
                 f"{self.config_hash}/)"]
        shown = list(self.failures.items())
        for scan_id, message in shown[:SHOWN_FAILURES]:
            lines.append(f"  failed {scan_id}: {message.removeprefix(f'scan {scan_id}: ')}")
        if len(shown) > SHOWN_FAILURES:
            lines.append(f"  ... and {len(shown) - SHOWN_FAILURES} more (see the log)")
        return lines


@task(name="preprocess_task", cache_policy=NO_CACHE, persist_result=False)
def preprocess_task(config: PreprocessConfig, data_root: Path, dask_address: DaskAddress,
                    run_id: str | None = None) -> PreprocessOutcome:
    """Pre-process every scan with masks (cache misses on Dask); write `preprocessed`."""
    logger = get_run_logger()
    config_hash = config.fingerprint()
    with StageRun.open(data_root, run_id) as run:
        items, missing, stale = preprocess_items(run, config)
        if stale:
            logger.warning("%d scan(s) have input files whose content differs from the hash "
                           "in their table; the file content is used", stale)
        result = cached_map(run, items, compute=preprocess_and_write,
                            finish=lambda item, key, out: _manifest(run, item, key, out),
                            address=dask_address, description="pre-processing scans",
                            unit="scans",
                            artifact_key="preprocess-progress")
        table = preprocessed_table(config, result.manifests)

        def write(key: str) -> Manifest:
            write_table(run.layout, "preprocessed", table)
            return Manifest(STAGE, key, {"preprocessed": artifact(
                run.layout, run.layout.table("preprocessed"), run.memo)}, {})

        stage = cached_stage(run, preprocessed_inputs(config, table), compute=write,
                             logger=logger)
    failures = dict(sorted({**missing, **result.failures}.items()))
    for scan_id, message in failures.items():
        logger.warning("pre-processing failed for scan %s: %s", scan_id,
                       message.removeprefix(f"scan {scan_id}: "))
    logger.info("pre-processing: %d processed, %d cached, %d failed", result.computed,
                result.cached, len(failures))
    return PreprocessOutcome(stage, result.computed, result.cached, failures, config_hash)


def preprocess_items(run: StageRun, config: PreprocessConfig
                     ) -> tuple[StageItems, dict[str, str], int]:
    """The preprocess-scan stage's items, one per scan with masks (arguments of
    `preprocess_and_write`), the scans that cannot be pre-processed with why, and how
    many scans' files differ from their table."""
    layout, config_hash = run.layout, config.fingerprint()
    scans = read_table(layout, "scans")[["scan_id", "volume_path", "volume_hash"]]
    masks = read_table(layout, "infection")[MASK_COLUMNS]
    rows = scans.merge(masks, on="scan_id", how="left").sort_values("scan_id", ignore_index=True)
    items, missing, stale = [], {}, 0
    for row in rows.itertuples(index=False):
        scan_id = str(row.scan_id)
        if pd.isna(row.lung_path):
            missing[scan_id] = "no lung/infection masks in the infection table"
            continue
        sources = {"volume": layout.resolve(str(row.volume_path)),
                   "lung": layout.resolve(str(row.lung_path)),
                   "infection": layout.resolve(str(row.infection_path))}
        absent = [name for name, path in sources.items() if not path.is_file()]
        if absent:
            missing[scan_id] = f"input file missing: {', '.join(absent)}"
            continue
        hashes = {name: run.memo.hash_file(path) for name, path in sources.items()}
        recorded = {"volume": row.volume_hash, "lung": row.lung_hash,
                    "infection": row.infection_hash}
        stale += int(hashes != recorded)
        destinations = {name: str(layout.preprocessed_file(config_hash, scan_id, name))
                        for name in OUTPUTS}
        items.append(MapItem(scan_id, {**hashes, "scan_id": scan_id},
                             (str(sources["volume"]), str(sources["lung"]),
                              str(sources["infection"]), destinations, scan_id, config)))
    return StageItems(SCAN_STAGE, VERSION, config_hash, items), missing, stale


def preprocessed_table(config: PreprocessConfig, manifests: dict[str, Manifest]) -> pd.DataFrame:
    """The `preprocessed` table of the scans' preprocess-scan manifests (by scan id)."""
    return pd.DataFrame([_row(config.fingerprint(), m) for _, m in sorted(manifests.items())],
                        columns=PREPROCESSED.names)


def preprocessed_inputs(config: PreprocessConfig, table: pd.DataFrame) -> StageInputs:
    """The preprocess stage's key (the `preprocessed` table): its rows and the config."""
    return StageInputs(STAGE, VERSION, config.fingerprint(), {
        "rows": hash_json(table.to_dict(orient="records")), "n_scans": str(len(table))})


def _manifest(run: StageRun, item: MapItem, key: str, result: dict[str, Any]) -> Manifest:
    destinations: dict[str, str] = item.args[3]
    outputs = {}
    for name in OUTPUTS:
        path = Path(destinations[name])
        run.memo.update({stat_key(path): result["sha256"][name]})
        outputs[name] = {"path": run.layout.relative(path), "sha256": result["sha256"][name]}
    return Manifest(SCAN_STAGE, key, outputs, {"scan_id": item.name, "shape": result["shape"],
                                               "scale_factor": result["scale_factor"]})


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
