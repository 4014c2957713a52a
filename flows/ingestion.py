"""The ingestion flow: a Dask cluster for the stage, then the ingestion task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from dsan_core.config import IngestConfig, RuntimeConfig
from flows.runtime import dask_scheduler
from storage.layout import DataLayout
from tasks.ingest import ingest_dicom_task


@flow(name="ingestion", validate_parameters=False)
def ingestion_flow(
    dicom_root: Path,
    labels: Path,
    config: IngestConfig,
    runtime: RuntimeConfig,
    data_root: Path,
    masks: Path | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    with dask_scheduler(runtime.dask, DataLayout(data_root).dask_scratch) as address:
        result: dict[str, Any] = ingest_dicom_task(
            dicom_root, labels, masks, config, data_root, address, run_id
        )
    return result


def format_ingest_summary(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"files found {summary['files_found']} = in scans {summary['files_in_scans']}"
        f" + in skipped series {summary['files_in_skipped_series']}"
        f" + quarantined {summary['files_quarantined']}",
        f"scans {summary['scans']} (decoded {summary['series_decoded']},"
        f" from cache {summary['series_cached']}), ground-truth masks"
        f" {summary['ground_truth_masks']}, quarantine rows {summary['quarantine_rows']}",
        "labels: " + ", ".join(f"{k} {v}" for k, v in summary["label_outcomes"].items() if v),
    ]
    return lines
