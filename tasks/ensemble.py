"""Ensemble stage (dual sampling, METHOD.md "Ensemble"): search (w_extreme, w_middle)
on the TV out-of-fold predictions of att_us and att_ss, then add the `att_ds` rows (val
and test) to the `predictions` table.

Inputs: the trained branches' predictions (`predictions/trained.parquet`), the groups
table (labels, ensemble bands) and EnsembleConfig. Outputs: the `predictions` table
(trained rows + att_ds rows, also kept as `predictions/ensemble.parquet`), the
`ensemble_surface` table, the chosen weights with the data and models they came from
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
    search_ensemble_weights,
)
from dsan_core.plots.evaluation import ensemble_surface_figure
from storage.atomic import write_json
from storage.stage_cache import Manifest, artifact
from storage.tables import read_table, read_table_file, write_table, write_table_file
from storage.volumes import write_figure
from tasks.contract import StageRun, cached_stage, require_tables

STAGE = "ensemble"
VERSION = "1"


@dataclass(frozen=True)
class EnsembleOutcome:
    stage: Manifest
    w_extreme: float
    w_middle: float
    objective: str
    value: float | None  # the objective on TV at the chosen weights (None: not searched)
    paper_value: float | None

    def summary(self) -> list[str]:
        if self.value is None:
            return [f"DS weights (configured, no search): extreme {self.w_extreme:.2f}, "
                    f"middle {self.w_middle:.2f}"]
        return [f"DS weights searched on TV out-of-fold predictions: extreme "
                f"{self.w_extreme:.2f}, middle {self.w_middle:.2f} (pooled {self.objective} "
                f"{self.value:.4f}; at the paper's {PAPER_WEIGHTS}: {self.paper_value:.4f})"]


@task(name="ensemble_task", cache_policy=NO_CACHE, persist_result=False)
def ensemble_task(data_root: Path, config: EnsembleConfig,
                  run_id: str | None = None) -> EnsembleOutcome:
    """Search the DS weights on TV and add att_ds predictions (val and test)."""
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:
        require_tables(run.layout, "groups")
        trained = run.layout.prediction_part("trained")
        if not trained.exists():
            require_tables(run.layout, "training_runs")  # names the stage to run first
        inputs = {"trained": run.memo.hash_file(trained),
                  "groups": run.memo.hash_file(run.layout.table("groups"))}

        def compute(key: str) -> Manifest:
            return _ensemble(run, key, config, inputs)

        stage = cached_stage(run, stage=STAGE, version=VERSION, config_hash=config.fingerprint(),
                             inputs=inputs, compute=compute, logger=logger)
        markdown = stage.output_path(run.layout, "weights").read_text()
    create_markdown_artifact(markdown=f"```json\n{markdown}\n```", key="ensemble-weights",
                             description="dual-sampling ensemble weights")
    d = stage.data
    return EnsembleOutcome(stage, d["w_extreme"], d["w_middle"], d["objective"], d["value"],
                           d["paper_value"])


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
    ds = apply_ensemble(trained, groups, weights)
    write_table_file(layout.prediction_part("ensemble"), "predictions", ds)
    write_table(layout, "predictions", pd.concat([trained, ds], ignore_index=True))
    record = {"w_extreme": weights.w_extreme, "w_middle": weights.w_middle,
              "objective": config.objective, "searched": config.search,
              "value": search.value if search else None,
              "paper_value": search.paper_value if search else None,
              "tv_scans": search.n_scans if search else None,
              "from": {"trained_predictions": inputs["trained"], "groups": inputs["groups"],
                       "models": sorted(set(trained["model_key"]))}}
    weights_path = layout.report(STAGE, "weights.json")
    write_json(weights_path, record)
    outputs = {name: artifact(layout, path, run.memo) for name, path in (
        ("predictions", layout.table("predictions")), ("weights", weights_path),
        ("ensemble_part", layout.prediction_part("ensemble")))}
    if search is not None:
        write_table(layout, "ensemble_surface", search.surface)
        figure = layout.figure(STAGE, "search_surface.png")
        write_figure(ensemble_surface_figure(search), figure)
        outputs["surface"] = artifact(layout, layout.table("ensemble_surface"), run.memo)
        outputs["figure"] = artifact(layout, figure, run.memo)
    return Manifest(STAGE, key, outputs, {k: record[k] for k in (
        "w_extreme", "w_middle", "objective", "value", "paper_value")})

