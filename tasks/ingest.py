"""Ingestion stage: DICOM export -> HU volumes + `scans`, `series`, `quarantine`,
`ground_truth` tables.

One Prefect task on purpose: raw headers (UIDs, patient ids, paths) must never
cross a Prefect task boundary, where inputs and results can be recorded. Inside
it, header indexing and decoding fan out over Dask as plain functions, and each
chosen series is cached by the content of its files (`ingest-series` manifests),
so changing one file re-ingests only its series.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import SimpleITK as sitk
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dsan_core.config import IngestConfig
from dsan_core.dicom import (
    choose_series,
    discover_files,
    is_published_key,
    pseudonymise,
    read_labels,
    reconcile_labels,
    resolve_pseudonym_key,
)
from dsan_core.errors import DsanError, MaskError, StageError
from dsan_core.segmentation.external import ScanGeometry, validate_external_mask
from storage.hashing import combine_hashes, sha256_file, stat_key
from storage.schemas import SCANS
from storage.stage_cache import Manifest, stage_key
from storage.tables import write_table
from storage.volumes import read_image, write_image
from tasks.contract import StageRun, cached_stage
from tasks.dask_map import map_on_dask
from tasks.ingest_rows import quarantine_rows, scan_row, series_rows
from tasks.workers import decode_and_write, index_chunk

STAGE = "ingest"
SERIES_STAGE = "ingest-series"
GROUND_TRUTH_STAGE = "ingest-ground-truth"
#: Bump when the decoded volume or the tables would change for the same input.
VERSION = "1"
KEY_ENV = "DSAN_PSEUDONYM_KEY"


# --- the task -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Indexed:
    records: pd.DataFrame
    failures: list
    file_hash: dict[str, str | None]  # raw path -> content hash (memory only)
    n_found: int


def _key_fingerprint(key: bytes) -> str:
    return hmac.new(key, b"dsan-key-fingerprint", hashlib.sha256).hexdigest()[:16]


def _index(run: StageRun, files: list[Path], config: IngestConfig, address: str) -> _Indexed:
    known = [run.memo.lookup(stat_key(p)) if p.is_file() else None for p in files]
    size = config.index_chunk_size
    chunks = [
        ([str(p) for p in files[i : i + size]], known[i : i + size])
        for i in range(0, len(files), size)
    ]
    results = map_on_dask(
        address, index_chunk, chunks, description="indexing DICOM headers",
        artifact_key="ingest-index-progress",
    )
    frames, failures, file_hash = [], [], {}
    for (paths, _), result in zip(chunks, results, strict=True):
        if isinstance(result, BaseException):
            raise StageError(f"header indexing failed in a chunk: {type(result).__name__}")
        frame, chunk_failures, hashes = result
        frames.append(frame)
        failures.extend(chunk_failures)
        file_hash.update(zip(paths, hashes, strict=True))
    run.memo.update(
        {stat_key(Path(p)): h for p, h in file_hash.items() if h is not None}
    )
    records = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return _Indexed(records, failures, file_hash, len(files))


def _series_hash(records: pd.DataFrame, file_hash: dict) -> dict[str, str]:
    """Content hash of every series: combined hashes of its files."""
    out: dict[str, str] = {}
    for uid, group in records.groupby("series_instance_uid", sort=False):
        out[str(uid)] = combine_hashes(str(file_hash.get(str(p)) or "") for p in group["path"])
    return out


def _import_ground_truth(
    run: StageRun, masks_root: Path, series_uid: str, scan_id: str, volume_manifest: Manifest
) -> Manifest | None:
    """Copy `<series uid>_{lung,infection}.nii.gz` in the scan's geometry, keyed by scan id."""
    sources = {kind: masks_root / f"{series_uid}_{kind}.nii.gz" for kind in ("lung", "infection")}
    if not all(path.is_file() for path in sources.values()):
        return None
    inputs = {kind: run.memo.hash_file(path) for kind, path in sources.items()}
    inputs["volume"] = volume_manifest.outputs["volume"]["sha256"]

    def compute(key: str) -> Manifest:
        reference = read_image(volume_manifest.output_path(run.layout, "volume"))
        outputs = {}
        for kind, path in sources.items():
            mask = read_image(path)
            validate_external_mask(mask.GetSize(), mask.GetSpacing(), mask.GetOrigin(),
                                   mask.GetDirection(), ScanGeometry.from_image(reference),
                                   scan_id=scan_id, kind=kind)
            mask.CopyInformation(reference)
            destination = run.layout.ground_truth_mask(scan_id, kind)
            write_image(sitk.Cast(mask > 0, sitk.sitkUInt8), destination)
            outputs[kind] = {"path": run.layout.relative(destination),
                             "sha256": run.memo.hash_file(destination)}
        return Manifest(GROUND_TRUTH_STAGE, key, outputs, {"scan_id": scan_id})

    return cached_stage(run, stage=GROUND_TRUTH_STAGE, version=VERSION, config_hash="-",
                        inputs=inputs, compute=compute, record=False)


@task(name="ingest_dicom_task", cache_policy=NO_CACHE, persist_result=False)
def ingest_dicom_task(
    dicom_root: Path,
    labels_path: Path,
    masks_root: Path | None,
    config: IngestConfig,
    data_root: Path,
    dask_address: str,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Index, choose, validate, decode, pseudonymise; write the ingestion tables."""
    logger = get_run_logger()
    key = resolve_pseudonym_key(config, os.environ.get(KEY_ENV))
    if is_published_key(key):
        logger.warning(
            "PSEUDONYM KEY IS THE PUBLISHED DEMO KEY: pseudonyms can be reversed by anyone. "
            "Use it for synthetic data only; set DSAN_PSEUDONYM_KEY for real exports."
        )
    with StageRun.open(data_root, run_id) as run:
        return _ingest(run, dicom_root, labels_path, masks_root, config, key, dask_address, logger)


def _ingest(run: StageRun, dicom_root: Path, labels_path: Path, masks_root: Path | None,
            config: IngestConfig, key: bytes, address: str, logger: Any) -> dict[str, Any]:
    if not dicom_root.is_dir():
        raise StageError("the DICOM root is not a folder (check --dicom-root)")
    files = discover_files(dicom_root)
    indexed = _index(run, files, config, address)
    plan = choose_series(indexed.records, config)
    labels = reconcile_labels(read_labels(labels_path), plan.studies)
    series_hash = _series_hash(indexed.records, indexed.file_hash)
    labelled = {str(r.study_instance_uid): r for r in labels.labels.itertuples(index=False)}

    # Per chosen series: cache lookup, then decode the misses on Dask.
    todo: list[tuple[str, str, str, str]] = []  # (series uid, scan id, study uid, cache key)
    manifests: dict[str, Manifest] = {}
    wanted = plan.studies[plan.studies["chosen_series_uid"] != ""]
    for study in wanted.itertuples(index=False):
        series_uid, study_uid = str(study.chosen_series_uid), str(study.study_instance_uid)
        if study_uid not in labelled:
            continue
        scan_id = pseudonymise("series", series_uid, key)
        cache_key = stage_key(SERIES_STAGE, VERSION, _key_fingerprint(key),
                              {"source": series_hash[series_uid], "scan_id": scan_id})
        hit = run.cache.lookup(SERIES_STAGE, cache_key)
        if hit is not None:
            manifests[series_uid] = hit
        else:
            todo.append((series_uid, scan_id, study_uid, cache_key))
    results = map_on_dask(
        address, decode_and_write,
        [([str(p) for p in plan.slice_paths[s]], str(run.layout.volume(sid)), sid)
         for s, sid, _, _ in todo],
        description="decoding series", artifact_key="ingest-decode-progress",
    )
    decode_failures: dict[str, str] = {}
    for (series_uid, scan_id, _study_uid, cache_key), result in zip(todo, results, strict=True):
        if isinstance(result, BaseException):
            message = str(result) if isinstance(result, DsanError) else type(result).__name__
            decode_failures[series_uid] = message
            continue
        volume_path = run.layout.volume(scan_id)
        manifest = Manifest(
            SERIES_STAGE, cache_key,
            {"volume": {"path": run.layout.relative(volume_path), "sha256": result["sha256"]}},
            {"scan_id": scan_id, "shape": result["shape"], "spacing": result["spacing"]},
        )
        run.cache.store(manifest)
        manifests[series_uid] = manifest

    ground_truth: dict[str, Manifest] = {}
    mask_failures: dict[str, str] = {}
    if masks_root is not None:
        for series_uid, manifest in manifests.items():
            scan_id = manifest.data["scan_id"]
            try:
                found = _import_ground_truth(run, masks_root, series_uid, scan_id, manifest)
            except MaskError as error:
                mask_failures[scan_id] = str(error)
                continue
            if found is not None:
                ground_truth[scan_id] = found

    first_records = indexed.records.drop_duplicates("series_instance_uid").set_index(
        "series_instance_uid", drop=False)
    scans = pd.DataFrame(
        [scan_row(first_records.loc[uid], plan.geometry.get(uid),
                  labelled[str(s.study_instance_uid)], manifests[uid], series_hash[uid], key)
         for s in wanted.itertuples(index=False)
         if (uid := str(s.chosen_series_uid)) in manifests],
        columns=SCANS.names,
    )
    series = series_rows(plan, series_hash, key, manifests, decode_failures)
    quarantine = quarantine_rows(plan, indexed, labels, series_hash, key, decode_failures,
                                 mask_failures)
    gt_table = pd.DataFrame(
        [{"scan_id": sid, "lung_path": m.outputs["lung"]["path"],
          "lung_hash": m.outputs["lung"]["sha256"],
          "infection_path": m.outputs["infection"]["path"],
          "infection_hash": m.outputs["infection"]["sha256"]}
         for sid, m in sorted(ground_truth.items())],
        columns=["scan_id", "lung_path", "lung_hash", "infection_path", "infection_hash"],
    )
    balance = _balance(indexed.n_found, scans, series, quarantine)

    tables = {"scans": scans, "series": series, "quarantine": quarantine,
              "ground_truth": gt_table}
    inputs = {
        "series": combine_hashes(m.key for m in manifests.values()),
        "ground_truth": combine_hashes(m.key for m in ground_truth.values()),
        "labels": sha256_file(labels_path),
        "tables": _frames_hash(tables),
    }

    def write_tables(stage_cache_key: str) -> Manifest:
        outputs = {}
        for name, frame in tables.items():
            write_table(run.layout, name, frame)
            path = run.layout.table(name)
            outputs[name] = {"path": run.layout.relative(path), "sha256": run.memo.hash_file(path)}
        return Manifest(STAGE, stage_cache_key, outputs, {})

    stage = cached_stage(run, stage=STAGE, version=VERSION,
                         config_hash=config.fingerprint() + _key_fingerprint(key),
                         inputs=inputs, compute=write_tables, logger=logger)
    summary = {
        "files_found": balance["found"],
        "files_in_scans": balance["in_scans"],
        "files_in_skipped_series": balance["skipped"],
        "files_quarantined": balance["quarantined"],
        "scans": len(scans),
        "series_decoded": len(todo) - len(decode_failures),
        "series_cached": len(manifests) - (len(todo) - len(decode_failures)),
        "ground_truth_masks": len(ground_truth),
        "quarantine_rows": len(quarantine),
        "label_outcomes": labels.counts,
    }
    logger.info("ingestion: %s", {k: v for k, v in summary.items() if k != "label_outcomes"})
    return {"stage": stage.to_dict(), "summary": summary}


def _frames_hash(frames: dict[str, pd.DataFrame]) -> str:
    digest = hashlib.sha256()
    for name in sorted(frames):
        digest.update(name.encode())
        digest.update(pd.util.hash_pandas_object(frames[name].astype(str), index=False)
                      .to_numpy().tobytes())
    return digest.hexdigest()


def _balance(found: int, scans: pd.DataFrame, series: pd.DataFrame,
             quarantine: pd.DataFrame) -> dict[str, int]:
    in_scans = int(series.loc[series["status"] == "chosen", "n_files"].sum())
    skipped = int(series.loc[series["status"] == "skipped", "n_files"].sum())
    quarantined = int(quarantine["n_files"].sum())
    if found != in_scans + skipped + quarantined:
        raise StageError(
            f"file balance does not add up: found {found}, in scans {in_scans}, "
            f"skipped {skipped}, quarantined {quarantined}"
        )
    return {"found": found, "in_scans": in_scans, "skipped": skipped, "quarantined": quarantined}
