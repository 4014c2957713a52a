"""The mask review flows: proposals out to reviewers, their corrections back in as
ground truth (`tasks.review`)."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from dsan_core.config import PipelineConfig
from dsan_core.segmentation.review import Strategy
from flows.segmentation import pick_device
from storage.inputs import ReviewFolder
from tasks.review import ExportOutcome, ImportOutcome, export_for_review_task, import_reviews_task


@flow(name="masks-export", validate_parameters=False)
def export_masks_flow(config: PipelineConfig, data_root: Path, n: int, strategy: Strategy,
                      folder: ReviewFolder | None = None, *, seed: int = 0,
                      include_proposed: bool = False) -> ExportOutcome:
    """`folder` reaches Prefect's database as "<redacted>" (see storage.inputs)."""
    return export_for_review_task(data_root, config.segmentation, n, strategy, folder,
                                  pick_device(config.runtime), seed=seed,
                                  include_proposed=include_proposed)


@flow(name="masks-import", validate_parameters=False)
def import_masks_flow(data_root: Path, folder: ReviewFolder, reviewer: str) -> ImportOutcome:
    return import_reviews_task(data_root, folder, reviewer)
