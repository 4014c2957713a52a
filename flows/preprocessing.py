"""The pre-processing flow: a Dask cluster (or the configured one), then the task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from dsan_core.config import PreprocessConfig, RuntimeConfig
from flows.runtime import dask_scheduler
from storage.layout import DataLayout
from tasks.preprocess import preprocess_task

#: Failures listed by scan in the summary; the rest are counted.
_SHOWN_FAILURES = 5


@flow(name="preprocessing", validate_parameters=False)
def preprocess_flow(
    config: PreprocessConfig,
    runtime: RuntimeConfig,
    data_root: Path,
    *,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Pre-process every scan that has masks; returns counts, summary lines and the
    stage manifest ("processed", "cached", "failed", "summary", "stage")."""
    with dask_scheduler(runtime.dask, DataLayout(data_root).dask_scratch) as address:
        result: dict[str, Any] = preprocess_task(config, data_root, address, run_id)
    return {**result, "summary": format_preprocess_summary(result)}


def format_preprocess_summary(result: dict[str, Any]) -> list[str]:
    lines = [
        f"scans pre-processed {result['processed']}, from cache {result['cached']}, "
        f"preprocess_failures {result['failed']} (outputs under preprocessed/"
        f"{result['config_hash']}/)",
    ]
    failures = list(result.get("failures", {}).items())
    for scan_id, message in failures[:_SHOWN_FAILURES]:
        lines.append(f"  failed {scan_id}: {message.removeprefix(f'scan {scan_id}: ')}")
    if len(failures) > _SHOWN_FAILURES:
        lines.append(f"  ... and {len(failures) - _SHOWN_FAILURES} more (see the log)")
    return lines

