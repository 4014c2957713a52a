"""The training stage's tables: every (fold, branch) model trained on the current data
-> `training_runs`, `training_history`, `predictions` (out-of-fold val rows and each
fold model's test rows; kept as the part `predictions/trained.parquet`, to which the
ensemble stage adds its rows), training curves per fold and a Prefect table artifact."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from dsan_core.branches import TRAINED
from dsan_core.config import TrainConfig
from dsan_core.evaluation.metrics import pooled_auc
from dsan_core.plots.training import training_curves_figure
from storage.schemas import PREDICTIONS, TRAINING_HISTORY, TRAINING_RUNS
from storage.stage_cache import Manifest, artifact
from storage.tables import read_table, read_table_file, write_table, write_table_file
from storage.volumes import write_figure
from tasks._common.contract import StageInputs, StageRun, cached_stage
from tasks.training import (
    PREDICTION_SETS,
    BranchOutcome,
    find_branch,
    fold_data,
    history_rows,
    run_row,
)

STAGE = "train"
VERSION = "2"


@dataclass(frozen=True)
class TrainingOutcome:
    stage: Manifest
    models: int
    missing: tuple[str, ...]  # "fold k branch" not trained on the current data yet
    oof_auc: dict[str, float]  # branch -> pooled out-of-fold AUC

    def summary(self) -> list[str]:
        lines = [f"{self.models} fold models; pooled out-of-fold AUC: " + ", ".join(
            f"{branch} {auc:.3f}" for branch, auc in self.oof_auc.items())]
        if self.missing:
            lines.append(f"not trained yet: {', '.join(self.missing)}")
        return lines


@task(name="training_tables_task", cache_policy=NO_CACHE, persist_result=False)
def training_tables_task(data_root: Path, config: TrainConfig, n_folds: int,
                         run_id: str | None = None) -> TrainingOutcome:
    """Gather the trained models of the current data into the training tables."""
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:
        found, missing = trained_models(run, config, n_folds)

        def compute(key: str) -> Manifest:
            return _write_tables(run, key, found)

        stage = cached_stage(run, tables_inputs(config, found), compute=compute, logger=logger)
        runs = read_table(run.layout, "training_runs")
    create_table_artifact(table=runs.drop(columns=["checkpoint_path"]).to_dict("records"),
                          key="training-runs", description="classifier models per fold")
    return TrainingOutcome(stage, len(found), tuple(missing), dict(stage.data["oof_auc"]))


def trained_models(run: StageRun, config: TrainConfig, n_folds: int
                   ) -> tuple[list[BranchOutcome], list[str]]:
    """Every (fold, branch) model trained on the current data, and "fold k branch" for
    those not trained yet."""
    found, missing = [], []
    for fold in range(n_folds):
        data = fold_data(run, fold)
        for branch in TRAINED:
            outcome = find_branch(run, data, config, fold, branch)
            if outcome is None:
                missing.append(f"fold {fold} {branch}")
            else:
                found.append(outcome)
    return found, missing


def tables_inputs(config: TrainConfig, found: list[BranchOutcome]) -> StageInputs:
    """The train stage's key (its tables): the models `found` and their predictions."""
    inputs = {f"{o.fold}:{o.branch}": ":".join(
        [o.train.key, *(o.predictions[s].key if s in o.predictions else "-"
                        for s in PREDICTION_SETS)]) for o in found}
    return StageInputs(STAGE, VERSION, config.training_fingerprint(), inputs)


def _write_tables(run: StageRun, key: str, found: list[BranchOutcome]) -> Manifest:
    layout = run.layout
    runs = pd.DataFrame([run_row(o) for o in found], columns=TRAINING_RUNS.names)
    history = pd.DataFrame([row for o in found for row in history_rows(run, o)],
                           columns=TRAINING_HISTORY.names)
    parts = [read_table_file(manifest.output_path(layout, "predictions"), "predictions")
             for o in found for manifest in o.predictions.values()]
    predictions = (pd.concat(parts, ignore_index=True) if parts
                   else pd.DataFrame(columns=PREDICTIONS.names))
    predictions = predictions.sort_values(["set", "branch", "fold", "scan_id"],
                                          ignore_index=True)
    outputs = {}
    for name, frame in (("training_runs", runs), ("training_history", history)):
        write_table(layout, name, frame)
        outputs[name] = artifact(layout, layout.table(name), run.memo)
    # The trained branches' rows are this stage's output; the `predictions` table is
    # them until the ensemble stage adds its att_ds rows (from this part).
    write_table_file(layout.prediction_part("trained"), "predictions", predictions)
    outputs["predictions"] = artifact(layout, layout.prediction_part("trained"), run.memo)
    write_table(layout, "predictions", predictions)
    for fold, rows in history.groupby("fold"):
        path = layout.figure("training", f"curves_fold_{int(fold)}.png")
        write_figure(training_curves_figure(rows, fold=int(fold)), path)
        outputs[f"curves:{int(fold)}"] = artifact(layout, path, run.memo)
    # Pooled out-of-fold AUC per branch (the paper's TV AUC).
    labels = read_table(layout, "groups").set_index("scan_id")["label"]
    oof_auc = pooled_auc(predictions[predictions["set"] == "val"], labels)
    return Manifest(STAGE, key, outputs, {"oof_auc": oof_auc})
