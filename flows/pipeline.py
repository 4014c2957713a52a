"""The pipeline flow: every stage, in order, each cached by content."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow

import tasks.baselines as baselines_task
import tasks.ensemble as ensemble_task
import tasks.evaluation as evaluation_task
import tasks.groups as groups_task
import tasks.ingest as ingest_task
import tasks.preprocess as preprocess_task
import tasks.segmentation as segmentation_task
import tasks.segmentation_eval as segmentation_eval
import tasks.splits as splits_task
import tasks.training as training_task
import tasks.training_tables as training_tables
from dsan_core.config import PipelineConfig
from dsan_core.errors import StageError
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
from storage.run_options import write_run_options
from tasks.ensemble import EnsembleOutcome
from tasks.evaluation import EvaluationOutcome
from tasks.ingest import IngestOutcome
from tasks.models import ModelOutcome, register_model_task
from tasks.preprocess import PreprocessOutcome
from tasks.splits import AuditOutcome, SplitOutcome

#: The pipeline's stages in order (what --refresh and --until name), with the internal
#: stage names (cache and lineage) each covers.
STAGES: dict[str, tuple[str, ...]] = {
    "ingest": (ingest_task.STAGE, ingest_task.SERIES_STAGE, ingest_task.GROUND_TRUTH_STAGE),
    "train-seg": (segmentation_task.TRAIN_STAGE,),
    "segment": (segmentation_task.SCAN_STAGE, segmentation_task.STAGE, groups_task.STAGE,
                segmentation_eval.FIGURES_STAGE, segmentation_eval.EVAL_STAGE),
    "split": (splits_task.STAGE, splits_task.AUDIT_STAGE),
    "preprocess": (preprocess_task.SCAN_STAGE, preprocess_task.STAGE),
    "train": (training_task.TRAIN_STAGE, training_task.PREDICT_STAGE, training_tables.STAGE),
    "ensemble": (ensemble_task.STAGE,),
    "evaluate": (baselines_task.STAGE, evaluation_task.STAGE),
}


@dataclass(frozen=True)
class PipelineResult:
    """What ran (stages after --until are None)."""

    run_id: str
    ingest: IngestOutcome
    segmentation: SegmentationResult | None = None
    splits: SplitOutcome | None = None
    audit: AuditOutcome | None = None
    preprocess: PreprocessOutcome | None = None
    training: TrainingResult | None = None
    ensemble: EnsembleOutcome | None = None
    evaluation: EvaluationOutcome | None = None
    model: ModelOutcome | None = None

    def summary(self) -> list[str]:
        sections = [("ingest", self.ingest.summary.lines())]
        for name, outcome in (("segment", self.segmentation), ("split", self.splits),
                              ("split", self.audit), ("preprocess", self.preprocess),
                              ("train", self.training), ("ensemble", self.ensemble),
                              ("evaluate", self.evaluation), ("model", self.model)):
            if outcome is not None:
                sections.append((name, outcome.summary()))
        return [f"[{name}] {line}" for name, lines in sections for line in lines]


def refreshed_stages(names: tuple[str, ...]) -> list[str]:
    """The internal stage names of the pipeline stages `names`; StageError for others."""
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise StageError(f"expected stages among {list(STAGES)}, found {unknown}")
    return sorted({internal for n in names for internal in STAGES[n]})


@flow(name="pipeline", validate_parameters=False)
def pipeline_flow(export: ExportLocation, config: PipelineConfig, data_root: Path, *,
                  refresh: tuple[str, ...] = (), until: str | None = None,
                  accumulate: bool = False) -> PipelineResult:
    """Every stage on `export` (recorded by Prefect as "<redacted>", see storage.inputs),
    holding the data root's lock (a worker runs this flow without the CLI).

    `refresh`: stages recomputed even when cached (what depends on them recomputes only
    where their outputs changed); `until`: the last stage to run; `accumulate`: add the
    export to the scans already ingested (a retraining's new drop).
    """
    if until is not None and until not in STAGES:
        raise StageError(f"expected --until among {list(STAGES)}, found {until!r}")
    layout = DataLayout(data_root)
    with data_root_lock(layout, command="pipeline flow"):
        run_id = new_run_id()
        write_run_options(layout, run_id, {"refresh": refreshed_stages(refresh)})
        return _pipeline(export, config, data_root, run_id, until, accumulate)


@flow(name="retrain", validate_parameters=False)
def retrain_flow(drop: ExportLocation, config: PipelineConfig, data_root: Path
                 ) -> PipelineResult:
    """A new drop of studies into the same data root, then everything that changed:
    known patients keep their set and fold, the folds and branches whose data changed
    retrain, and the new ensemble meets the champion / challenger gate."""
    return pipeline_flow(drop, config, data_root, accumulate=True)


def _pipeline(export: ExportLocation, config: PipelineConfig, data_root: Path, run_id: str,
              until: str | None, accumulate: bool) -> PipelineResult:
    def named(flow_fn: Any, stage: str) -> Any:
        return flow_fn.with_options(flow_run_name=run_name(stage, config.profile))

    def done(stage: str) -> bool:  # the run stops after `until`
        order = [s for s in STAGES if s != "train-seg"]
        last = "segment" if until == "train-seg" else until
        return last is not None and order.index(stage) > order.index(last)

    steps: dict[str, Any] = {"ingest": named(ingestion_flow, "ingest")(
        export, config.ingest, config.runtime, data_root, run_id, accumulate)}
    if not done("segment"):
        steps["segmentation"] = named(segmentation_flow, "segment")(
            config.segmentation, config.groups, config.runtime, data_root, run_id)
    if not done("split"):
        steps["splits"] = named(split_flow, "split")(config.split, data_root, run_id=run_id)
        steps["audit"] = named(audit_splits_flow, "audit-splits")(config.split, data_root,
                                                                  run_id=run_id)
    if not done("preprocess"):
        steps["preprocess"] = named(preprocess_flow, "preprocess")(
            config.preprocess, config.runtime, data_root, run_id=run_id)
    if not done("train"):
        steps["training"] = named(training_flow, "train")(
            config.train, config.split, config.runtime, data_root, run_id=run_id)
    if not done("ensemble"):
        steps["ensemble"] = named(ensemble_flow, "ensemble")(config.ensemble, data_root, run_id)
    if not done("evaluate"):
        steps["evaluation"] = named(evaluation_flow, "evaluate")(
            config.evaluation, config.train, config.runtime, data_root, config.fingerprints(),
            config.profile, run_id)
        steps["model"] = register_model_task(data_root, config, run_id)
    return PipelineResult(run_id, **steps)
