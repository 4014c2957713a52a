"""The pipeline flow: every stage that exists, in order, each cached by content."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow

from dsan_core.config import PipelineConfig
from flows.ingestion import ingestion_flow
from flows.preprocessing import preprocess_flow
from flows.segmentation import segmentation_flow
from flows.splits import audit_splits_flow, split_flow
from storage.lineage import new_run_id


@flow(name="pipeline", validate_parameters=False)
def pipeline_flow(
    dicom_root: Path,
    labels: Path,
    config: PipelineConfig,
    data_root: Path,
    masks: Path | None = None,
) -> dict[str, Any]:
    run_id = new_run_id()
    ingest = ingestion_flow(dicom_root, labels, config.ingest, config.runtime, data_root, masks,
                            run_id)
    summary = ["[ingest] " + line for line in ingest.summary.lines()]
    segmentation = segmentation_flow(config.segmentation, config.groups, config.runtime,
                                     data_root, run_id)
    summary += ["[segment] " + line for line in segmentation["summary"]]
    splits = split_flow(config.split, data_root, run_id=run_id)
    audit = audit_splits_flow(config.split, data_root, run_id=run_id)
    summary += ["[split] " + line for line in splits.summary() + audit.summary()]
    preprocess = preprocess_flow(config.preprocess, config.runtime, data_root, run_id=run_id)
    summary += ["[preprocess] " + line for line in preprocess.summary()]
    return {"run_id": run_id, "ingest": ingest, "segmentation": segmentation,
            "splits": splits, "audit": audit, "preprocess": preprocess, "summary": summary}
