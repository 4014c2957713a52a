"""The ingestion flow: a Dask cluster for the stage, then the ingestion task."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from dsan_core.config import IngestConfig, RuntimeConfig
from flows.runtime import dask_scheduler
from storage.inputs import ExportLocation
from storage.layout import DataLayout
from tasks.ingest import STAGE, IngestOutcome, ingest_dicom_task


@flow(name=STAGE, validate_parameters=False)
def ingestion_flow(
    export: ExportLocation,
    config: IngestConfig,
    runtime: RuntimeConfig,
    data_root: Path,
    run_id: str | None = None,
    accumulate: bool = False,
) -> IngestOutcome:
    """`export` reaches Prefect's database as "<redacted>" (see storage.inputs);
    `accumulate` adds it to the scans already ingested (retraining)."""
    with dask_scheduler(runtime.dask, DataLayout(data_root).dask_scratch) as address:
        return ingest_dicom_task(export, config, data_root, address, run_id, accumulate)
