"""Evaluation stage (METHOD.md "Evaluation"): the paper's metrics with bootstrap
intervals at thresholds chosen out-of-fold, the fold-averaged and shipped models, the
untrained baselines beside the networks, paired t-tests and DeLong tests with Holm
correction, calibration, attention faithfulness inside the lung with the deletion test,
the figures, and the report (Markdown + one self-contained HTML page).

Inputs: the `predictions` table (the networks, att_ds and att_ds_nested), the
baselines' part (`predictions/baselines.parquet`), groups, splits, the trained models
(`training_runs`: checkpoints for the attention maps), the ensemble's weights (all-TV and
nested) and surface, and the EvaluationConfig / TrainConfig fingerprints. Outputs: the
`metrics`, `comparisons`, `thresholds`, `reliability` and `faithfulness` tables, figures
under `figures/evaluation/`, and `reports/evaluation/report.{md,html}` (+ the Markdown's
figures beside it), also published as Prefect artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from dsan_core.classifier import ClassifierCase
from dsan_core.config import EvaluationConfig, TrainConfig
from dsan_core.ensemble import shipped_predictions
from dsan_core.evaluation.attention_maps import (
    MapCase,
    MapModel,
    PanelScan,
    attention_panel,
    map_scores,
)
from dsan_core.evaluation.comparisons import comparisons_table
from dsan_core.evaluation.faithfulness import faithfulness_table
from dsan_core.evaluation.report import (
    ReportFigure,
    ReportInputs,
    ReportProvenance,
    render_html,
    render_markdown,
)
from dsan_core.evaluation.report_tables import table_ii, text_lines
from dsan_core.evaluation.tables import metrics_table, reliability_tables
from dsan_core.evaluation.thresholds import threshold_table
from dsan_core.groups import LABEL_COVID
from dsan_core.plots.evaluation import reliability_figure, roc_figure, select_figure_scans
from storage.atomic import write_bytes, write_text
from storage.checkpoints import load_checkpoint
from storage.lineage import code_version
from storage.report_inputs import ensemble_search, ensemble_weights, nested_folds, provenance
from storage.schemas import FAITHFULNESS
from storage.stage_cache import Manifest, artifact
from storage.tables import read_table, read_table_file, require_tables, write_table
from storage.volumes import figure_png, open_npy, read_geometry
from tasks._common.contract import StageInputs, StageRun, cached_stage
from tasks._common.progress import StageProgress
from tasks.models import current_model_id

STAGE = "evaluate"
VERSION = "2"
REPORT = "evaluation"
INPUT_TABLES = ("predictions", "groups", "splits", "training_runs", "preprocessed", "scans")


@dataclass(frozen=True)
class EvaluationOutcome:
    stage: Manifest
    report: str  # Markdown report, relative to the data root
    html: str
    table_ii: tuple[str, ...]  # Table II as text lines

    def summary(self) -> list[str]:
        return [*self.table_ii, f"report: {self.report} (and {self.html})"]


@task(name="evaluate_task", cache_policy=NO_CACHE, persist_result=False)
def evaluate_task(data_root: Path, config: EvaluationConfig, train: TrainConfig,
                  device: str, fingerprints: dict[str, str], profile: str,
                  run_id: str | None = None) -> EvaluationOutcome:
    """Metrics, statistics, calibration, faithfulness, figures and the report."""
    logger = get_run_logger()
    with StageRun.open(data_root, run_id) as run:
        spec = evaluation_inputs(run, config, train)

        def compute(key: str) -> Manifest:
            return _evaluate(run, key, config, train, device, provenance(
                run.layout, fingerprints, profile, code_version(),
                current_model_id(run, fingerprints), train.network_summary()), logger)

        stage = cached_stage(run, spec, compute=compute, logger=logger)
        markdown = stage.output_path(run.layout, "report").read_text()
        metrics = read_table(run.layout, "metrics")
        thresholds = read_table(run.layout, "thresholds")
    create_markdown_artifact(markdown=markdown, key="evaluation-report",
                             description="DSAN evaluation (pseudonymous ids only)")
    create_table_artifact(table=metrics.to_dict("records"), key="evaluation-metrics",
                          description="metrics with patient-bootstrap intervals")
    lines = tuple(text_lines(table_ii(metrics, thresholds)))
    return EvaluationOutcome(stage, stage.outputs["report"]["path"],
                             stage.outputs["html"]["path"], lines)


def evaluation_inputs(run: StageRun, config: EvaluationConfig,
                      train: TrainConfig) -> StageInputs:
    """The stage's key: its tables', the baselines', the ensemble weights' and the ensemble
    search figure's (shown in the report) content hashes ('-' for one not written), the
    config and the training fingerprint."""
    require_tables(run.layout, *INPUT_TABLES)
    inputs = {name: run.memo.hash_file(run.layout.table(name)) for name in INPUT_TABLES}
    for name, path in (("ensemble", run.layout.ensemble_weights()),
                       ("ensemble_figure", run.layout.ensemble_search_figure()),
                       ("baselines", run.layout.prediction_part("baselines"))):
        inputs[name] = run.memo.hash_file(path) if path.exists() else "-"
    return StageInputs(STAGE, VERSION, config.fingerprint() + train.training_fingerprint(),
                       inputs)


def _scored_predictions(run: StageRun) -> pd.DataFrame:
    """The networks' predictions and, once computed, the baselines'."""
    predictions = read_table(run.layout, "predictions")
    part = run.layout.prediction_part("baselines")
    if not part.exists():
        return predictions
    return pd.concat([predictions, read_table_file(part, "predictions")], ignore_index=True)


def _evaluate(run: StageRun, key: str, config: EvaluationConfig, train: TrainConfig,
              device: str, source: ReportProvenance, logger: Any) -> Manifest:
    layout = run.layout
    predictions = _scored_predictions(run)
    groups, splits = (read_table(layout, n) for n in ("groups", "splits"))
    weights = ensemble_weights(run.layout)
    shipped = None if weights is None else shipped_predictions(predictions, groups, weights)
    thresholds = threshold_table(predictions, groups, config)
    metrics = metrics_table(predictions, groups, splits, config, thresholds=thresholds,
                            shipped=shipped)
    comparisons = comparisons_table(metrics, predictions, groups, shipped)
    reliability = reliability_tables(predictions, groups, config.ece_bins)
    preprocessed = read_table(layout, "preprocessed")
    cases = _test_covid_cases(run, preprocessed, groups, splits)
    chosen = select_figure_scans(groups, [c.case.scan_id for c in cases],
                                 config.figures_per_bin)
    models = [MapModel(int(r.fold), str(r.branch),
                       partial(load_checkpoint, layout.resolve(r.checkpoint_path)))
              for r in read_table(layout, "training_runs").itertuples(index=False)]
    with StageProgress("attention maps of the test COVID scans", len(models),
                       unit="models") as progress:
        scores, maps = map_scores(models, cases, train, config, torch.device(device),
                                  set(chosen), on_model=progress.advance)
    faithfulness = faithfulness_table(scores, groups)
    tables = {"metrics": metrics, "comparisons": comparisons, "thresholds": thresholds,
              "reliability": reliability,
              "faithfulness": scores.reindex(columns=FAITHFULNESS.names)}
    outputs = {}
    for name, frame in tables.items():
        write_table(layout, name, frame)
        outputs[name] = artifact(layout, layout.table(name), run.memo)
    search = ensemble_search(run.layout)
    panel = attention_panel(_panel_scans(run, chosen, preprocessed, groups), maps)
    figures = _figures(predictions, groups, reliability, panel,
                       layout.ensemble_search_figure() if search is not None else None)
    for figure in figures:
        for path in (layout.figure(REPORT, f"{figure.name}.png"),
                     layout.report(REPORT, f"figures/{figure.name}.png")):
            write_bytes(path, figure.png)
        outputs[f"figure:{figure.name}"] = artifact(
            layout, layout.figure(REPORT, f"{figure.name}.png"), run.memo)
    report = ReportInputs(metrics, comparisons, source, reliability, faithfulness, search,
                          figures, thresholds=thresholds, nested=nested_folds(run.layout))
    for name, text in (("report", render_markdown(report)), ("html", render_html(report))):
        path = layout.report(REPORT, "report.md" if name == "report" else "report.html")
        write_text(path, text)
        outputs[name] = artifact(layout, path, run.memo)
    logger.info("evaluation: %d metric rows, %d comparisons, %d maps", len(metrics),
                len(comparisons), len(scores))
    return Manifest(STAGE, key, outputs, {})


def _test_covid_cases(run: StageRun, preprocessed: pd.DataFrame, groups: pd.DataFrame,
                      splits: pd.DataFrame) -> list[MapCase]:
    """The COVID scans of the test set that were pre-processed, as classifier cases."""
    test = set(splits.loc[splits["set"] == "test", "scan_id"])
    covid = groups[(groups["label"] == LABEL_COVID) & groups["scan_id"].isin(test)]
    rows = preprocessed.set_index("scan_id")

    def array(scan_id: str, column: str) -> Any:
        return partial(open_npy, run.layout.resolve(rows.loc[scan_id, column]))

    return [MapCase(ClassifierCase(scan_id, 1, str(group), array(scan_id, "input_path"),
                                   array(scan_id, "infection_path")),
                    array(scan_id, "lung_path"))
            for scan_id, group in sorted(zip(covid["scan_id"], covid["sampling_group"],
                                             strict=True))
            if scan_id in rows.index]


def _panel_scans(run: StageRun, chosen: list[str], preprocessed: pd.DataFrame,
                 groups: pd.DataFrame) -> list[PanelScan]:
    rows = preprocessed.set_index("scan_id")
    bins = groups.set_index("scan_id")["analysis_bin"]

    def load(scan_id: str) -> Any:
        row = rows.loc[scan_id]
        spacing = read_geometry(run.layout.resolve(row["geometry_path"]))["final_spacing"]
        image, lung, infection = (np.asarray(open_npy(run.layout.resolve(row[column])))
                                  for column in ("input_path", "lung_path", "infection_path"))
        return (image.astype(np.float32), lung, infection,
                tuple(float(v) for v in spacing))

    return [PanelScan(scan_id, str(bins.loc[scan_id]), partial(load, scan_id))
            for scan_id in chosen]


def _figures(predictions: pd.DataFrame, groups: pd.DataFrame, reliability: pd.DataFrame,
             panel: Any, ensemble_figure: Path | None) -> list[ReportFigure]:
    """The report's figures as PNG bytes; the ensemble search's is the one its stage saved
    (`ensemble_figure`), not drawn again."""
    drawn = [("roc", "ROC curves per fold model, TV (out-of-fold) and test (the paper's "
                     "Fig. 4)", roc_figure(predictions, groups)),
             ("reliability", "Reliability diagrams on test (per fold model) and TV",
              reliability_figure(reliability))]
    if panel is not None:
        drawn.append(("attention", "COVID test scans per analysis bin: CT, masks, Grad-CAM "
                                   "and attention (Fig. 5)", panel))
    figures = [ReportFigure(name, caption, figure_png(figure)) for name, caption, figure in drawn]
    if ensemble_figure is not None:
        figures.append(ReportFigure("ensemble", "Ensemble weight search on TV",
                                    ensemble_figure.read_bytes()))
    return figures
