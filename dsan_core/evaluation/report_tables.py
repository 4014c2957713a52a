"""Display tables of the evaluation report: the long tables turned into rows of text.

Numbers have 3 decimals, p-values 3 significant digits (or '<0.001'), undefined
values 'n/a'. Test-set cells are 'mean ± std' over the fold models; TV cells are the
pooled value. A '*' after a p-value marks p < 0.01, the paper's criterion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from dsan_core.branches import MODEL_NAMES
from dsan_core.evaluation.comparisons import TEST_DELONG, TEST_PAIRED_T
from dsan_core.evaluation.metrics import CLASSIFICATION_METRICS, ECE, METRIC_NAMES
from dsan_core.evaluation.paper import PAPER
from dsan_core.evaluation.predictions import BRANCH_RN34_US, ordered_models
from dsan_core.evaluation.tables import (
    AGG_MEAN,
    AGG_POOLED,
    AGG_STD,
    BIN_ALL,
    BINS,
    SET_TV,
)
from dsan_core.groups import LABEL_CAP, LABEL_COVID

NOT_AVAILABLE = "n/a"
SIGNIFICANCE = 0.01


@dataclass(frozen=True)
class DisplayTable:
    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    note: str = ""
    #: Long tables an HTML report folds away (still present in full).
    folded: bool = field(default=False)


def text_lines(table: DisplayTable) -> list[str]:
    """A table as aligned plain-text lines (title, header, rows) for a terminal."""
    widths = [max(len(str(c)), *(len(str(r[i])) for r in table.rows))
              for i, c in enumerate(table.header)]
    line = "  ".join(str(c).ljust(w) for c, w in zip(table.header, widths, strict=True))
    rows = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
            for r in table.rows]
    return [table.title, line.rstrip(), *rows]


def _missing(value: Any) -> bool:
    return value is None or bool(pd.isna(value))


def _rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in table.to_dict("records")]


def number(value: Any, digits: int = 3) -> str:
    if _missing(value):
        return NOT_AVAILABLE
    return f"{float(value):.{digits}f}"


def p_value(value: Any) -> str:
    if _missing(value):
        return NOT_AVAILABLE
    p = float(value)
    text = "<0.001" if p < 0.001 else f"{p:.3g}"
    return text + ("*" if p < SIGNIFICANCE else "")


def _fold(fold: Any, pooled: str = "pooled") -> str:
    return pooled if _missing(fold) else str(int(fold))


def model_name(model: str) -> str:
    return MODEL_NAMES.get(model, model)


def _mean_std(mean: Any, std: Any) -> str:
    if _missing(mean):
        return NOT_AVAILABLE
    if _missing(std):
        return number(mean)
    return f"{number(mean)} ± {number(std)}"


def _lookup(metrics: pd.DataFrame) -> dict[tuple[str, str, str, str, str], float]:
    """(model, set, aggregate, bin, metric) -> value, for the rows without a fold."""
    rows = metrics.loc[metrics["fold"].isna()]
    return {(r["model"], r["set"], r["aggregate"], r["bin"], r["metric"]): r["value"]
            for r in _rows(rows)}


def _counts(metrics: pd.DataFrame, model: str, set_name: str,
            bin_name: str) -> tuple[str, str]:
    aggregate = AGG_POOLED if set_name == SET_TV else AGG_MEAN
    rows = metrics.loc[(metrics["model"] == model) & (metrics["set"] == set_name)
                       & (metrics["aggregate"] == aggregate) & (metrics["bin"] == bin_name)]
    if rows.empty:
        return NOT_AVAILABLE, NOT_AVAILABLE
    return str(int(rows["n_covid"].iloc[0])), str(int(rows["n_cap"].iloc[0]))


def _cell(values: dict[tuple[str, str, str, str, str], float], model: str, set_name: str,
          bin_name: str, metric: str) -> str:
    if set_name == SET_TV:
        return number(values.get((model, SET_TV, AGG_POOLED, bin_name, metric)))
    return _mean_std(values.get((model, "test", AGG_MEAN, bin_name, metric)),
                     values.get((model, "test", AGG_STD, bin_name, metric)))


def table_ii(metrics: pd.DataFrame) -> DisplayTable:
    """Table II: TV AUC (pooled) and the test metrics (mean ± std), each beside the paper's."""
    values = _lookup(metrics)
    header = ["Model", "TV AUC", "paper"]
    for metric in CLASSIFICATION_METRICS:
        header += [f"Test {METRIC_NAMES[metric]}", "paper"]
    rows = []
    for model in ordered_models(metrics["model"]):
        paper = PAPER.table_ii.get(model, {})
        row = [model_name(model), _cell(values, model, SET_TV, BIN_ALL, "auc"),
               number(paper.get("tv_auc"))]
        for metric in CLASSIFICATION_METRICS:
            row += [_cell(values, model, "test", BIN_ALL, metric), number(paper.get(metric))]
        rows.append(row)
    return DisplayTable("Table II: TV (pooled folds) and test (mean ± std over fold models)",
                        header, rows, "Threshold 0.5 for accuracy, sensitivity, specificity "
                        "and F1 (P(COVID) >= threshold is COVID); std with ddof = 1.")


def table_iii(metrics: pd.DataFrame, set_name: str) -> DisplayTable:
    """Table III for one set: per analysis bin and model, scan counts beside the paper's
    and the five metrics."""
    values = _lookup(metrics)
    header = ["Bin", "Model", "COVID", "CAP", "paper COVID", "paper CAP",
              *(METRIC_NAMES[m] for m in CLASSIFICATION_METRICS)]
    rows = []
    for bin_name in BINS[1:]:
        paper_covid = PAPER.scan_counts[(set_name, LABEL_COVID)][bin_name]
        paper_cap = PAPER.scan_counts[(set_name, LABEL_CAP)][bin_name]
        for model in ordered_models(metrics["model"]):
            covid, cap = _counts(metrics, model, set_name, bin_name)
            rows.append([bin_name, model_name(model), covid, cap, str(paper_covid),
                         str(paper_cap),
                         *(_cell(values, model, set_name, bin_name, m)
                           for m in CLASSIFICATION_METRICS)])
    label = "TV (pooled folds)" if set_name == SET_TV else "test (mean ± std over fold models)"
    return DisplayTable(f"Table III: by infection-ratio bin, {label}", header, rows,
                        "The paper's per-bin counts; its per-bin metrics are not restated "
                        "in METHOD.md. AUC is n/a in a bin with one class.")


def interval_table(metrics: pd.DataFrame) -> DisplayTable:
    """Every metric with its bootstrap interval: TV pooled and test mean, bin 'all'."""
    rows = metrics.loc[(metrics["bin"] == BIN_ALL)
                       & metrics["aggregate"].isin([AGG_POOLED, AGG_MEAN])]
    out = []
    for model in ordered_models(rows["model"]):
        for set_name in (SET_TV, "test"):
            part = rows.loc[(rows["model"] == model) & (rows["set"] == set_name)]
            if part.empty:
                continue
            cells = {r["metric"]: f"{number(r['value'])} [{number(r['ci_low'])}, "
                                  f"{number(r['ci_high'])}]" for r in _rows(part)}
            out.append([model_name(model), set_name,
                        *(cells.get(m, NOT_AVAILABLE) for m in (*CLASSIFICATION_METRICS, ECE))])
    header = ["Model", "Set", *(METRIC_NAMES[m] for m in (*CLASSIFICATION_METRICS, ECE))]
    return DisplayTable("Metrics with patient-level bootstrap intervals", header, out,
                        "value [low, high]; test: mean over fold models and the interval "
                        "of that mean.")


def metrics_appendix(metrics: pd.DataFrame) -> DisplayTable:
    header = ["Model", "Set", "Aggregate", "Fold", "Bin", "Metric", "Value", "CI low",
              "CI high", "COVID", "CAP"]
    rows = [[r["model"], r["set"], r["aggregate"], _fold(r["fold"], ""), r["bin"],
             r["metric"], number(r["value"]), number(r["ci_low"]), number(r["ci_high"]),
             str(r["n_covid"]), str(r["n_cap"])] for r in _rows(metrics)]
    return DisplayTable("All metrics (long table)", header, rows, folded=True)


def t_test_table(comparisons: pd.DataFrame, bins: Sequence[str] = (BIN_ALL,)) -> DisplayTable:
    rows = comparisons.loc[(comparisons["test"] == TEST_PAIRED_T)
                           & comparisons["bin"].isin(bins)]
    out = [[model_name(r["model_a"]), model_name(r["model_b"]), r["bin"],
            METRIC_NAMES.get(r["metric"], r["metric"]), number(r["estimate"]),
            number(r["statistic"], 2), p_value(r["p_value"]), str(r["n"])]
           for r in _rows(rows)]
    return DisplayTable(
        "Paired t-tests across fold models (test set)" + ("" if len(bins) > 1 else ", all scans"),
        ["Model A", "Model B", "Bin", "Metric", "Mean A - B", "t", "p", "Folds"], out,
        "* p < 0.01", folded=len(bins) > 1)


def delong_table(comparisons: pd.DataFrame, bins: Sequence[str] = (BIN_ALL,)) -> DisplayTable:
    rows = comparisons.loc[(comparisons["test"] == TEST_DELONG)
                           & comparisons["bin"].isin(bins)]
    out = [[model_name(r["model_a"]), model_name(r["model_b"]), r["set"], _fold(r["fold"]),
            r["bin"], number(r["estimate"]), number(r["statistic"], 2), p_value(r["p_value"]),
            str(r["n"])] for r in _rows(rows)]
    return DisplayTable(
        "DeLong tests of paired AUCs" + ("" if len(bins) > 1 else ", all scans"),
        ["Model A", "Model B", "Set", "Fold", "Bin", "AUC A - B", "z", "p", "Scans"], out,
        "* p < 0.01", folded=len(bins) > 1)


def ece_table(metrics: pd.DataFrame) -> DisplayTable:
    values = _lookup(metrics)
    rows = [[model_name(m), _cell(values, m, SET_TV, BIN_ALL, ECE),
             _cell(values, m, "test", BIN_ALL, ECE)] for m in ordered_models(metrics["model"])]
    return DisplayTable("Expected calibration error", ["Model", "TV", "Test"], rows)


def reliability_display(reliability: pd.DataFrame) -> DisplayTable:
    header = ["Model", "Set", "Fold", "P(COVID) bin", "Scans", "Mean P(COVID)",
              "COVID fraction"]
    rows = [[model_name(r["model"]), r["set"], _fold(r["fold"]),
             f"{r['bin_low']:.2f}-{r['bin_high']:.2f}", str(r["n_scans"]),
             number(r["mean_predicted"]), number(r["fraction_covid"])]
            for r in _rows(reliability)]
    return DisplayTable("Reliability-diagram data", header, rows, folded=True)


def faithfulness_display(faithfulness: pd.DataFrame) -> DisplayTable:
    rows = [[model_name(r["model"]) + (" (Grad-CAM)" if r["model"] == BRANCH_RN34_US else ""),
             r["bin"], str(r["n_maps"]), _mean_std(r["mass_inside_mean"], r["mass_inside_std"]),
             number(r["pointing_rate"])] for r in _rows(faithfulness)]
    return DisplayTable("Attention faithfulness on COVID test scans",
                        ["Map", "Bin", "Maps", "Mass inside infection", "Pointing-game hits"],
                        rows, "Mass: mean ± std over maps; hits: fraction of maps whose "
                        "maximum lies in the infection mask.")
