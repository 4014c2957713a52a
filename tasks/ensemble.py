"""Ensemble stage (dual sampling, METHOD.md "Ensemble"): search (w_extreme, w_middle)
on the TV out-of-fold predictions of att_us and att_ss, then add the `att_ds` rows (val
and test) to the `predictions` table; and the same search nested (fold k's weights from
the other folds), whose `att_ds_nested` val rows are the DS's honest TV predictions.

Inputs: the trained branches' predictions (`predictions/trained.parquet`), the groups
table (labels, ensemble bands) and EnsembleConfig. Outputs: the `predictions` table
(trained rows + att_ds + att_ds_nested rows, the latter two also kept as
`predictions/ensemble.parquet`), the `ensemble_surface` table, the chosen weights (and
the nested per-fold ones) with the data and models they came from
(`reports/ensemble/weights.json`) and the heat map of the search surface.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from dsan_core.config import EnsembleConfig
from dsan_core.ensemble import (
    PAPER_WEIGHTS,
    EnsembleSearch,
    apply_ensemble,
    configured_weights,
    nested_ensemble,
    search_ensemble_weights,
)
from dsan_core.errors import StageError
from dsan_core.plots.evaluation import ensemble_surface_figure
from storage.atomic import write_json
from storage.stage_cache import Manifest, artifact
from storage.tables import (
    read_table,
    read_table_file,
    require_tables,
    write_table,
    write_table_file,
)
from storage.volumes import write_figure
from tasks._common.contract import StageInputs, StageRun, cached_stage

STAGE = "ensemble"
VERSION = "2"


@dataclass(frozen=True)
class EnsembleOutcome:
    stage: Manifest
    w_extreme: float
    w_middle: float
    objective: str
    value: float | None  # the objective on TV at the chosen weights (None: not searched)
    paper_value: float | None
    nested: tuple[tuple[float, float], ...] = ()  # per fold (w_extreme, w_middle)

    def summary(self) -> list[str]:
        if self.value is None:
            return [f"DS weights (configured, no search): extreme {self.w_extreme:.2f}, "
                    f"middle {self.w_middle:.2f}"]
        lines = [f"DS weights searched on TV out-of-fold predictions: extreme "
                 f"{self.w_extreme:.2f}, middle {self.w_middle:.2f} (pooled {self.objective} "
                 f"{self.value:.4f}, in-sample; at the paper's {PAPER_WEIGHTS}: "
                 f"{self.paper_value:.4f})"]
        if self.nested:
            lines.append("nested weights (fold k's from the other folds): " + ", ".join(
                f"{e:.2f}/{m:.2f}" for e, m in self.nested))
        return lines


@task(name="ensemble_task", cache_policy=NO_CACHE, persist_result=False)
def ensemble_task(data_root: Path, config: EnsembleConfig,
                  run_id: str | None = None) -> EnsembleOutcome:
    """Search the DS weights on TV and add att_ds predictions (val and test)."""
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:
        spec = ensemble_inputs(run, config)

        def compute(key: str) -> Manifest:
            return _ensemble(run, key, config, dict(spec.inputs))

        stage = cached_stage(run, spec, compute=compute, logger=logger)
        markdown = stage.output_path(run.layout, "weights").read_text()
    create_markdown_artifact(markdown=f"```json\n{markdown}\n```", key="ensemble-weights",
                             description="dual-sampling ensemble weights")
    d = stage.data
    return EnsembleOutcome(stage, d["w_extreme"], d["w_middle"], d["objective"], d["value"],
                           d["paper_value"], tuple((float(f["w_extreme"]), float(f["w_middle"]))
                                                   for f in d.get("nested", [])))


def ensemble_inputs(run: StageRun, config: EnsembleConfig) -> StageInputs:
    """The ensemble stage's key: the trained branches' predictions, the groups table and
    the config."""
    require_tables(run.layout, "groups", "training_runs")
    trained = run.layout.prediction_part("trained")
    if not trained.exists():
        raise StageError("predictions/trained.parquet is missing: run the train stage first")
    return StageInputs(STAGE, VERSION, config.fingerprint(), {
        "trained": run.memo.hash_file(trained),
        "groups": run.memo.hash_file(run.layout.table("groups"))})


def _ensemble(run: StageRun, key: str, config: EnsembleConfig,
              inputs: dict[str, str]) -> Manifest:
    layout = run.layout
    trained = read_table_file(layout.prediction_part("trained"), "predictions")
    groups = read_table(layout, "groups")
    search: EnsembleSearch | None = None
    if config.search:
        search = search_ensemble_weights(trained, groups, config)
        weights = search.weights
    else:
        weights = configured_weights(config)
    nested = nested_ensemble(trained, groups, config)
    ds = pd.concat([apply_ensemble(trained, groups, weights), nested.predictions],
                   ignore_index=True)
    write_table_file(layout.prediction_part("ensemble"), "predictions", ds)
    write_table(layout, "predictions", pd.concat([trained, ds], ignore_index=True))
    record = {"w_extreme": weights.w_extreme, "w_middle": weights.w_middle,
              "objective": config.objective, "searched": config.search,
              "value": search.value if search else None,
              "paper_value": search.paper_value if search else None,
              "tv_scans": search.n_scans if search else None,
              # Fold k's weights, searched on the other folds (value: the objective there).
              "nested": [{"fold": f.fold, "w_extreme": f.weights.w_extreme,
                          "w_middle": f.weights.w_middle,
                          "value": None if f.value != f.value else f.value,
                          "searched_scans": f.n_searched, "scored_scans": f.n_scored}
                         for f in nested.folds],
              "from": {"trained_predictions": inputs["trained"], "groups": inputs["groups"],
                       "models": sorted(set(trained["model_key"]))}}
    weights_path = layout.ensemble_weights()
    write_json(weights_path, record)
    outputs = {name: artifact(layout, path, run.memo) for name, path in (
        ("predictions", layout.table("predictions")), ("weights", weights_path),
        ("ensemble_part", layout.prediction_part("ensemble")))}
    if search is not None:
        write_table(layout, "ensemble_surface", search.surface)
        figure = layout.ensemble_search_figure()
        write_figure(ensemble_surface_figure(search), figure)
        outputs["surface"] = artifact(layout, layout.table("ensemble_surface"), run.memo)
        outputs["figure"] = artifact(layout, figure, run.memo)
    return Manifest(STAGE, key, outputs, {k: record[k] for k in (
        "w_extreme", "w_middle", "objective", "value", "paper_value", "nested")})

