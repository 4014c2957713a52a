"""The predict flow: new studies through the data root's trained ensemble."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from dsan_core.config import PipelineConfig
from flows.segmentation import pick_device
from storage.inputs import PredictRequest
from tasks.predict import PredictOutcome, predict_task


@flow(name="predict", validate_parameters=False)
def predict_flow(request: PredictRequest, config: PipelineConfig,
                 data_root: Path) -> PredictOutcome:
    """`request` reaches Prefect's database as "<redacted>" (see storage.inputs)."""
    return predict_task(request, config.ingest, config.evaluation.threshold, data_root,
                        pick_device(config.runtime))
