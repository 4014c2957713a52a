"""The ensemble and evaluation flows."""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from dsan_core.config import EnsembleConfig, EvaluationConfig, RuntimeConfig, TrainConfig
from flows.runtime import off_main_thread
from flows.segmentation import pick_device
from tasks.baselines import baselines_task
from tasks.ensemble import STAGE as ENSEMBLE
from tasks.ensemble import EnsembleOutcome, ensemble_task
from tasks.evaluation import STAGE as EVALUATE
from tasks.evaluation import EvaluationOutcome, evaluate_task


@flow(name=ENSEMBLE, validate_parameters=False)
def ensemble_flow(config: EnsembleConfig, data_root: Path,
                  run_id: str | None = None) -> EnsembleOutcome:
    return ensemble_task(data_root, config, run_id)


@flow(name=EVALUATE, validate_parameters=False)
def evaluation_flow(config: EvaluationConfig, train: TrainConfig, runtime: RuntimeConfig,
                    data_root: Path, fingerprints: dict[str, str], profile: str,
                    run_id: str | None = None) -> EvaluationOutcome:
    """The untrained baselines, then the evaluation. `fingerprints`
    (PipelineConfig.fingerprints) and `profile` go into the report's provenance."""
    baselines_task(data_root, config, run_id)
    return off_main_thread(evaluate_task, data_root, config, train, pick_device(runtime),
                           fingerprints, profile, run_id)
