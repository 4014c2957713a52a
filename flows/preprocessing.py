"""The pre-processing flow: a Dask cluster (or the configured one), then the task."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from dsan_core.config import PreprocessConfig, RuntimeConfig
from flows.runtime import dask_scheduler
from storage.layout import DataLayout
from tasks.preprocess import STAGE, PreprocessOutcome, preprocess_task


@flow(name=STAGE, validate_parameters=False)
def preprocess_flow(
    config: PreprocessConfig,
    runtime: RuntimeConfig,
    data_root: Path,
    *,
    run_id: str | None = None,
) -> PreprocessOutcome:
    """Pre-process every scan that has masks."""
    with dask_scheduler(runtime.dask, DataLayout(data_root).dask_scratch) as address:
        return preprocess_task(config, data_root, address, run_id)
