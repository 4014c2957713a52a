"""Baselines stage: the untrained baselines' predictions (not in the paper), to set the
networks against what a scan's own numbers predict (`dsan_core.evaluation.baselines`).

Inputs: the `preprocessed` table (each scan's network input and lung mask, named with
their content hashes), groups (labels, infection ratios), splits (set, fold) and
EvaluationConfig's baseline settings. Outputs: the `baseline_features` table and the
baselines' prediction rows, `predictions/baselines.parquet` (the predictions table's
contract; the evaluation stage scores them with the networks).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dsan_core.config import EvaluationConfig
from dsan_core.evaluation.baselines import FeatureCase, compute_baselines
from dsan_core.evaluation.metrics import pooled_auc
from storage.stage_cache import Manifest, artifact
from storage.tables import read_table, require_tables, write_table, write_table_file
from storage.volumes import open_npy
from tasks._common.contract import StageInputs, StageRun, cached_stage

STAGE = "baselines"
VERSION = "1"
INPUT_TABLES = ("preprocessed", "groups", "splits")


@dataclass(frozen=True)
class BaselinesOutcome:
    stage: Manifest
    oof_auc: dict[str, float]  # baseline -> pooled out-of-fold AUC on TV

    def summary(self) -> list[str]:
        return ["untrained baselines (not in the paper), pooled out-of-fold AUC: " + ", ".join(
            f"{name} {auc:.3f}" for name, auc in self.oof_auc.items())]


@task(name="baselines_task", cache_policy=NO_CACHE, persist_result=False)
def baselines_task(data_root: Path, config: EvaluationConfig,
                   run_id: str | None = None) -> BaselinesOutcome:
    """Image features of every pre-processed scan and the baselines' predictions."""
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:

        def compute(key: str) -> Manifest:
            return _baselines(run, key, config)

        stage = cached_stage(run, baselines_inputs(run, config), compute=compute,
                             logger=logger)
    return BaselinesOutcome(stage, {str(k): float(v) for k, v in stage.data["oof_auc"].items()})


def baselines_inputs(run: StageRun, config: EvaluationConfig) -> StageInputs:
    """The baselines' key: the pre-processed, groups and splits tables and the config."""
    require_tables(run.layout, *INPUT_TABLES)
    return StageInputs(STAGE, VERSION, config.baselines_fingerprint(), {
        name: run.memo.hash_file(run.layout.table(name)) for name in INPUT_TABLES})


def _baselines(run: StageRun, key: str, config: EvaluationConfig) -> Manifest:
    layout = run.layout
    preprocessed, groups, splits = (read_table(layout, n) for n in INPUT_TABLES)
    cases = [FeatureCase(str(r.scan_id), partial(open_npy, layout.resolve(r.input_path)),
                         partial(open_npy, layout.resolve(r.lung_path)))
             for r in preprocessed.sort_values("scan_id").itertuples(index=False)]
    result = compute_baselines(cases, groups, splits, config.baseline_histogram_bins)
    write_table(layout, "baseline_features", result.features)
    part = layout.prediction_part("baselines")
    write_table_file(part, "predictions", result.predictions)
    labels = groups.set_index("scan_id")["label"]
    val = result.predictions.loc[result.predictions["set"] == "val"]
    oof_auc = pooled_auc(val, labels)
    return Manifest(STAGE, key, {
        "features": artifact(layout, layout.table("baseline_features"), run.memo),
        "predictions": artifact(layout, part, run.memo)}, {"oof_auc": oof_auc})
