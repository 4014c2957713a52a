"""The ingestion flow: a Dask cluster for the stage, then the ingestion task."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from dsan_core.config import IngestConfig, RuntimeConfig
from flows.runtime import dask_scheduler
from storage.layout import DataLayout
from tasks.ingest import IngestOutcome, ingest_dicom_task


@flow(name="ingestion", validate_parameters=False)
def ingestion_flow(
    dicom_root: Path,
    labels: Path,
    config: IngestConfig,
    runtime: RuntimeConfig,
    data_root: Path,
    masks: Path | None = None,
    run_id: str | None = None,
) -> IngestOutcome:
    with dask_scheduler(runtime.dask, DataLayout(data_root).dask_scratch) as address:
        return ingest_dicom_task(dicom_root, labels, masks, config, data_root, address, run_id)
