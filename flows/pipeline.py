"""The pipeline flow: every stage, in order, each cached by content."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow

from dsan_core.config import PipelineConfig
from flows.evaluation import ensemble_flow, evaluation_flow
from flows.ingestion import ingestion_flow
from flows.preprocessing import preprocess_flow
from flows.runtime import run_name
from flows.segmentation import SegmentationResult, segmentation_flow
from flows.splits import audit_splits_flow, split_flow
from flows.training import TrainingResult, training_flow
from storage.inputs import ExportLocation
from storage.layout import DataLayout
from storage.lineage import new_run_id
from storage.lock import data_root_lock
from tasks.ensemble import EnsembleOutcome
from tasks.evaluation import EvaluationOutcome
from tasks.ingest import IngestOutcome
from tasks.preprocess import PreprocessOutcome
from tasks.splits import AuditOutcome, SplitOutcome


@dataclass(frozen=True)
class PipelineResult:
    run_id: str
    ingest: IngestOutcome
    segmentation: SegmentationResult
    splits: SplitOutcome
    audit: AuditOutcome
    preprocess: PreprocessOutcome
    training: TrainingResult
    ensemble: EnsembleOutcome
    evaluation: EvaluationOutcome

    def summary(self) -> list[str]:
        sections = [("ingest", self.ingest.summary.lines()),
                    ("segment", self.segmentation.summary()),
                    ("split", self.splits.summary() + self.audit.summary()),
                    ("preprocess", self.preprocess.summary()),
                    ("train", self.training.summary()),
                    ("ensemble", self.ensemble.summary()),
                    ("evaluate", self.evaluation.summary())]
        return [f"[{name}] {line}" for name, lines in sections for line in lines]


@flow(name="pipeline", validate_parameters=False)
def pipeline_flow(export: ExportLocation, config: PipelineConfig,
                  data_root: Path) -> PipelineResult:
    """Every stage on `export` (recorded by Prefect as "<redacted>", see storage.inputs),
    holding the data root's lock (a worker runs this flow without the CLI)."""
    with data_root_lock(DataLayout(data_root), command="pipeline flow"):
        return _pipeline(export, config, data_root)


def _pipeline(export: ExportLocation, config: PipelineConfig, data_root: Path) -> PipelineResult:
    run_id = new_run_id()

    def named(flow_fn: Any, stage: str) -> Any:
        return flow_fn.with_options(flow_run_name=run_name(stage, config.profile))

    ingest = named(ingestion_flow, "ingest")(export, config.ingest, config.runtime, data_root,
                                             run_id)
    segmentation = named(segmentation_flow, "segment")(
        config.segmentation, config.groups, config.runtime, data_root, run_id)
    splits = named(split_flow, "split")(config.split, data_root, run_id=run_id)
    audit = named(audit_splits_flow, "audit-splits")(config.split, data_root, run_id=run_id)
    preprocess = named(preprocess_flow, "preprocess")(config.preprocess, config.runtime,
                                                      data_root, run_id=run_id)
    training = named(training_flow, "train")(config.train, config.split, config.runtime,
                                             data_root, run_id=run_id)
    ensemble = named(ensemble_flow, "ensemble")(config.ensemble, data_root, run_id)
    evaluation = named(evaluation_flow, "evaluate")(
        config.evaluation, config.train, config.runtime, data_root, config.fingerprints(),
        config.profile, run_id)
    return PipelineResult(run_id, ingest, segmentation, splits, audit, preprocess, training,
                          ensemble, evaluation)
