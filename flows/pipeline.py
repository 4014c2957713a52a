"""The pipeline flow: every stage, in order, each cached by content."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow

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
from tasks.stages import (
    ENSEMBLE,
    EVALUATE,
    INGEST,
    PREPROCESS,
    SEGMENT,
    SPLIT,
    STAGES,
    TRAIN,
    TRAIN_SEG,
)


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
        sections = [(INGEST, self.ingest.summary.lines())]
        for name, outcome in ((SEGMENT, self.segmentation), (SPLIT, self.splits),
                              (SPLIT, self.audit), (PREPROCESS, self.preprocess),
                              (TRAIN, self.training), (ENSEMBLE, self.ensemble),
                              (EVALUATE, self.evaluation), ("model", self.model)):
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
        order = [s for s in STAGES if s != TRAIN_SEG]
        last = SEGMENT if until == TRAIN_SEG else until
        return last is not None and order.index(stage) > order.index(last)

    steps: dict[str, Any] = {"ingest": named(ingestion_flow, INGEST)(
        export, config.ingest, config.runtime, data_root, run_id, accumulate)}
    if not done(SEGMENT):
        steps["segmentation"] = named(segmentation_flow, SEGMENT)(
            config.segmentation, config.groups, config.runtime, data_root, run_id)
    if not done(SPLIT):
        steps["splits"] = named(split_flow, SPLIT)(config.split, data_root, run_id=run_id)
        steps["audit"] = named(audit_splits_flow, "audit-splits")(config.split, data_root,
                                                                  run_id=run_id)
    if not done(PREPROCESS):
        steps["preprocess"] = named(preprocess_flow, PREPROCESS)(
            config.preprocess, config.runtime, data_root, run_id=run_id)
    if not done(TRAIN):
        steps["training"] = named(training_flow, TRAIN)(
            config.train, config.split, config.runtime, data_root, run_id=run_id)
    if not done(ENSEMBLE):
        steps["ensemble"] = named(ensemble_flow, ENSEMBLE)(config.ensemble, data_root, run_id)
    if not done(EVALUATE):
        steps["evaluation"] = named(evaluation_flow, EVALUATE)(
            config.evaluation, config.train, config.runtime, data_root, config.fingerprints(),
            config.profile, run_id)
        steps["model"] = register_model_task(data_root, config, run_id)
    return PipelineResult(run_id, **steps)
