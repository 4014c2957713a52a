"""Ingestion stage: DICOM export -> HU volumes + `scans`, `series`, `quarantine`,
`ground_truth` tables.

One Prefect task on purpose: raw headers (UIDs, patient ids, paths) must never
cross a Prefect task boundary, where inputs and results can be recorded. Inside
it, header indexing and decoding fan out over Dask as plain functions (series
choice and the tables are built in this process, by `dsan_core.dicom.ingestion`),
and each chosen series is cached by the content of its files (`ingest-series`
manifests, stored as each series is decoded), so changing one file re-ingests only
its series and a killed run resumes.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dsan_core.config import KEY_ENV, IngestConfig
from dsan_core.dicom import (
    DecodedSeries,
    FileFailure,
    IngestPlan,
    IngestTables,
    ingestion_tables,
    is_published_key,
    key_fingerprint,
    list_export,
    merge_tables,
    plan_ingestion,
    read_labels,
    records_to_frame,
    require_scans,
    resolve_pseudonym_key,
)
from dsan_core.errors import InputError, ItemFailed
from dsan_core.segmentation.external import conform_mask
from storage.hashing import combine_hashes, sha256_bytes, stat_key
from storage.inputs import ExportLocation
from storage.layout import DataLayout
from storage.stage_cache import Manifest, artifact
from storage.tables import read_table, table_exists, write_table
from storage.volumes import read_image, write_image
from tasks._common.contract import (
    DaskAddress,
    MapItem,
    MapResult,
    StageInputs,
    StageItems,
    StageRun,
    cached_map,
    cached_stage,
    resolve_address,
)
from tasks._common.dask_map import WorkerError, map_on_dask
from tasks._common.workers import decode_and_write, index_chunk

STAGE = "ingest"
SERIES_STAGE = "ingest-series"
GROUND_TRUTH_STAGE = "ingest-ground-truth"
#: Bump when the decoded volume or the tables would change for the same input.
#: 2: ages in years with 2 decimals (036M was 0 years), age_years a float column.
#: 3: keyed by the export's content fingerprint.
VERSION = "3"
#: The decoded volume of a series depends only on its files and its scan id.
SERIES_VERSION = "1"
#: 2: a ground-truth mask with values other than 0/1 is refused, not binarised.
GROUND_TRUTH_VERSION = "2"


@dataclass(frozen=True)
class IngestSummary:
    files_found: int
    files_in_scans: int
    files_in_skipped_series: int
    files_quarantined: int
    scans: int
    series_decoded: int
    series_cached: int
    ground_truth_masks: int
    quarantine_rows: int
    label_outcomes: dict[str, int]
    known_scans: int = 0  # retraining: scans of earlier drops kept beside this one's

    def lines(self) -> list[str]:
        known = ([f"added to {self.known_scans} scans of earlier drops"]
                 if self.known_scans else [])
        return known + [
            f"files found {self.files_found} = in scans {self.files_in_scans}"
            f" + in skipped series {self.files_in_skipped_series}"
            f" + quarantined {self.files_quarantined}",
            f"scans {self.scans} (decoded {self.series_decoded}, from cache"
            f" {self.series_cached}), ground-truth masks {self.ground_truth_masks},"
            f" quarantine rows {self.quarantine_rows}",
            "labels: " + ", ".join(f"{k} {v}" for k, v in self.label_outcomes.items() if v),
        ]


@dataclass(frozen=True)
class IngestOutcome:
    stage: Manifest
    summary: IngestSummary


@dataclass(frozen=True)
class _Indexed:
    records: pd.DataFrame
    failures: list[FileFailure]
    file_hash: dict[str, str | None]  # raw path -> content hash (memory only)


@task(name="ingest_dicom_task", cache_policy=NO_CACHE, persist_result=False)
def ingest_dicom_task(export: ExportLocation, config: IngestConfig, data_root: Path,
                      dask_address: DaskAddress, run_id: str | None = None,
                      accumulate: bool = False) -> IngestOutcome:
    """Index, choose, validate, decode, pseudonymise; write the ingestion tables.

    The stage is keyed by the export's content (every file's hash by relative path, the
    labels and the masks): an unchanged export is a cache hit found from the hash memo
    alone, without reading a header or starting Dask. `accumulate` (retraining) adds the
    export to the scans already ingested instead of replacing them.
    """
    logger = get_run_logger()
    key = pseudonym_key(config)
    if is_published_key(key):
        logger.warning(
            "PSEUDONYM KEY IS THE PUBLISHED DEMO KEY: pseudonyms can be reversed by anyone. "
            "Use it for synthetic data only; set DSAN_PSEUDONYM_KEY for real exports."
        )
    with StageRun.open(data_root, run_id) as run:
        files = list_export(export.dicom_root)
        indexed: list[_Indexed] = []

        def index() -> _Indexed:
            if not indexed:
                indexed.append(_index(run, files, config, resolve_address(dask_address)))
            return indexed[0]

        fingerprint = export_fingerprint(run, export, files)
        if fingerprint is None:  # new or changed files: their hashes come from indexing
            index()
            fingerprint = export_fingerprint(run, export, files)
        spec = ingest_inputs(run, str(fingerprint), config, key, accumulate=accumulate)
        stage = cached_stage(
            run, spec, logger=logger,
            compute=lambda stage_key: _ingest(run, stage_key, export, files, index(), config,
                                              key, dask_address, "known" in spec.inputs))
    summary = IngestSummary(**stage.data["summary"])
    if stage.data["cache_hit"]:
        summary = replace(summary, series_decoded=0,
                          series_cached=summary.series_decoded + summary.series_cached)
    logger.info("ingestion: %s", summary.lines()[:2])
    if summary.scans == 0:
        raise InputError(stage.data["no_scans"], reason="no_usable_series")
    return IngestOutcome(stage, summary)


def _ingest(run: StageRun, stage_key: str, export: ExportLocation, files: list[Path],
            indexed: _Indexed, config: IngestConfig, key: bytes, dask_address: DaskAddress,
            accumulate: bool) -> Manifest:
    """Choose, decode, import masks and write the four tables (merged into the known ones
    when `accumulate`)."""
    plan = plan_ingestion(indexed.records, read_labels(export.labels), config, key)
    series_hash = _series_hashes(indexed)
    volumes = _decode(run, plan, series_hash, key, dask_address)
    decoded = {uid: _decoded(m) for uid, m in volumes.manifests.items()}
    truth, mask_failures = _ground_truth(run, export.masks, plan, decoded)
    tables = ingestion_tables(
        plan, indexed.records, n_files=len(files), file_failures=indexed.failures,
        file_hash=indexed.file_hash, series_hash=series_hash, decoded=decoded,
        decode_failures=volumes.failures, ground_truth=truth, mask_failures=mask_failures,
        key=key)
    frames = tables.frames()
    if accumulate:
        frames = merge_tables({n: read_table(run.layout, n) for n in frames
                               if table_exists(run.layout, n)}, frames)
    outputs = {}
    for name, frame in frames.items():
        write_table(run.layout, name, frame)
        outputs[name] = artifact(run.layout, run.layout.table(name), run.memo)
    try:
        require_scans(tables)
        no_scans = ""
    except InputError as error:  # raised once the tables (the quarantine) are written
        no_scans = str(error)
    summary = asdict(_summary(tables, volumes, plan))
    summary["known_scans"] = len(frames["scans"]) - len(tables.scans) if accumulate else 0
    return Manifest(STAGE, stage_key, outputs, {"summary": summary, "no_scans": no_scans})


def export_fingerprint(run: StageRun, export: ExportLocation, files: list[Path]) -> str | None:
    """One hash of the export's content: each DICOM file's content hash with its path
    relative to the DICOM root, the labels file and the masks; from the hash memo only
    (by path, size and mtime, like make). None when a DICOM file is not known yet."""
    entries = []
    for path in files:
        known = run.memo.lookup(stat_key(path))
        if known is None:
            return None
        entries.append(f"{path.relative_to(export.dicom_root).as_posix()}\0{known}")
    entries.append(f"labels\0{run.memo.hash_file(export.labels)}")
    if export.masks is not None and export.masks.is_dir():
        entries += [f"masks/{p.name}\0{run.memo.hash_file(p)}"
                    for p in sorted(export.masks.iterdir()) if p.is_file()]
    return sha256_bytes("\n".join(entries).encode())


def ingest_inputs(run: StageRun, fingerprint: str, config: IngestConfig, key: bytes, *,
                  accumulate: bool = False) -> StageInputs:
    """The ingest stage's key: the export's `fingerprint` (`export_fingerprint`), the
    config and the pseudonym key's fingerprint; with `accumulate` (retraining) also the
    scans already ingested."""
    inputs = {"export": fingerprint}
    if accumulate and table_exists(run.layout, "scans"):
        inputs["known"] = run.memo.hash_file(run.layout.table("scans"))
    return StageInputs(STAGE, VERSION, config.fingerprint() + key_fingerprint(key), inputs)


def pseudonym_key(config: IngestConfig) -> bytes:
    """The pseudonym key of this run: $DSAN_PSEUDONYM_KEY, else the profile's."""
    return resolve_pseudonym_key(config, os.environ.get(KEY_ENV))


def _index(run: StageRun, files: list[Path], config: IngestConfig, address: str) -> _Indexed:
    """Header records and content hashes of every file, in chunks on Dask."""
    known = [run.memo.lookup(stat_key(p)) if p.is_file() else None for p in files]
    size = config.index_chunk_size
    chunks = [([str(p) for p in files[i:i + size]], known[i:i + size])
              for i in range(0, len(files), size)]
    results = map_on_dask(address, index_chunk, chunks, description="indexing DICOM headers",
                          unit="chunks", artifact_key="ingest-index-progress")
    frames, failures, file_hash = [], [], {}
    for number, ((paths, _), result) in enumerate(zip(chunks, results, strict=True)):
        if isinstance(result, WorkerError):
            # index_chunk quarantines bad files itself: anything raised here is a bug.
            get_run_logger().error("header indexing failed:\n%s", result.trace)
            raise ItemFailed(f"ingest: header indexing of chunk {number} failed with an "
                             f"unexpected {type(result.error).__name__} (a bug; traceback in "
                             "the log)")
        frame, chunk_failures, hashes = result
        frames.append(frame)
        failures.extend(chunk_failures)
        file_hash.update(zip(paths, hashes, strict=True))
    run.memo.update({stat_key(Path(p)): h for p, h in file_hash.items() if h is not None})
    records = pd.concat(frames, ignore_index=True) if frames else records_to_frame([])
    return _Indexed(records, failures, file_hash)


def _series_hashes(indexed: _Indexed) -> dict[str, str]:
    """Content hash of every series: the combined hashes of its files."""
    if indexed.records.empty:
        return {}
    return {str(uid): combine_hashes(str(indexed.file_hash.get(str(p)) or "")
                                     for p in group["path"])
            for uid, group in indexed.records.groupby("series_instance_uid", sort=False)}


def _decode(run: StageRun, plan: IngestPlan, series_hash: dict[str, str], key: bytes,
            address: DaskAddress) -> MapResult:
    """Decode the chosen series (cache misses on Dask); manifests by raw series UID."""
    layout = run.layout
    items = [MapItem(job.series_uid, {"source": series_hash[job.series_uid],
                                      "scan_id": job.scan_id},
                     ([str(p) for p in job.slice_paths], str(layout.volume(job.scan_id)),
                      job.scan_id))
             for job in plan.jobs]

    def finish(item: MapItem, key_: str, result: dict[str, Any]) -> Manifest:
        volume = Path(item.args[1])
        run.memo.update({stat_key(volume): result["sha256"]})
        return Manifest(SERIES_STAGE, key_,
                        {"volume": {"path": layout.relative(volume), "sha256": result["sha256"]}},
                        {"scan_id": item.args[2], "shape": result["shape"],
                         "spacing": result["spacing"]})

    return cached_map(run, StageItems(SERIES_STAGE, SERIES_VERSION, key_fingerprint(key), items),
                      compute=decode_and_write, finish=finish,
                      address=address, description="decoding series", unit="series",
                      artifact_key="ingest-decode-progress")


def _decoded(manifest: Manifest) -> DecodedSeries:
    z, y, x = manifest.data["shape"]
    sx, sy, sz = manifest.data["spacing"]
    volume = manifest.outputs["volume"]
    return DecodedSeries(manifest.data["scan_id"], volume["path"], volume["sha256"],
                         (int(z), int(y), int(x)), (float(sx), float(sy), float(sz)))


def _ground_truth(run: StageRun, masks_root: Path | None, plan: IngestPlan,
                  decoded: dict[str, DecodedSeries]
                  ) -> tuple[dict[str, dict[str, str]], dict[str, tuple[str, str]]]:
    """Ground-truth masks `<series uid>_{lung,infection}.nii.gz` copied onto each scan's
    grid, keyed by scan id; and why a scan's masks were refused."""
    if masks_root is None:
        return {}, {}
    items = []
    for job in plan.jobs:
        sources = {kind: masks_root / f"{job.series_uid}_{kind}.nii.gz"
                   for kind in ("lung", "infection")}
        if job.series_uid in decoded and all(p.is_file() for p in sources.values()):
            scan = decoded[job.series_uid]
            inputs = {kind: run.memo.hash_file(p) for kind, p in sources.items()}
            items.append(MapItem(scan.scan_id, inputs | {"volume": scan.volume_hash},
                                 (scan, sources)))

    def copy_masks(scan: DecodedSeries, sources: dict[str, Path]) -> Manifest:
        return _copy_masks(run.layout, run.memo.hash_file, scan, sources)

    result = cached_map(run, StageItems(GROUND_TRUTH_STAGE, GROUND_TRUTH_VERSION, "-", items),
                        compute=copy_masks,
                        description="importing ground-truth masks", unit="scans")
    truth = {scan_id: {"lung_path": m.outputs["lung"]["path"],
                       "lung_hash": m.outputs["lung"]["sha256"],
                       "infection_path": m.outputs["infection"]["path"],
                       "infection_hash": m.outputs["infection"]["sha256"]}
             for scan_id, m in result.manifests.items()}
    return truth, {scan_id: (result.reasons[scan_id], message)
                   for scan_id, message in result.failures.items()}


def _copy_masks(layout: DataLayout, hash_file: Any, scan: DecodedSeries,
                sources: dict[str, Path]) -> Manifest:
    reference = read_image(layout.resolve(scan.volume_path))
    outputs = {}
    for kind, path in sources.items():
        mask = conform_mask(read_image(path), reference, scan_id=scan.scan_id, kind=kind)
        destination = layout.ground_truth_mask(scan.scan_id, kind)
        write_image(mask, destination)
        outputs[kind] = {"path": layout.relative(destination), "sha256": hash_file(destination)}
    return Manifest(GROUND_TRUTH_STAGE, "", outputs, {"scan_id": scan.scan_id})


def _summary(tables: IngestTables, volumes: MapResult, plan: IngestPlan) -> IngestSummary:
    balance = tables.balance
    return IngestSummary(
        files_found=balance.found, files_in_scans=balance.in_scans,
        files_in_skipped_series=balance.skipped, files_quarantined=balance.quarantined,
        scans=len(tables.scans), series_decoded=volumes.computed,
        series_cached=volumes.cached, ground_truth_masks=len(tables.ground_truth),
        quarantine_rows=len(tables.quarantine), label_outcomes=dict(plan.labels.counts))
