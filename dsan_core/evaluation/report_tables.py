"""Display tables of the evaluation report: the long tables turned into rows of text.

Numbers have 3 decimals, p-values 3 significant digits (or '<0.001'), undefined
values 'n/a'. Test-set cells are 'mean ± std' over the fold models, except the shipped
model's (one fold-averaged model); TV cells are the pooled value. n cells read
'scans (COVID/CAP), patients'. A '*' after a Holm-adjusted p-value marks p < 0.01, the
paper's criterion, after correcting within the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from dsan_core.branches import ATT_DS, RN34_US
from dsan_core.evaluation.comparisons import TEST_DELONG, TEST_PAIRED_T
from dsan_core.evaluation.metrics import AUC, CLASSIFICATION_METRICS, ECE, METRIC_NAMES
from dsan_core.evaluation.tables import (
    AGG_AVERAGED,
    AGG_MEAN,
    AGG_POOLED,
    AGG_STD,
    BIN_ALL,
    BINS,
    SET_TV,
)
from dsan_core.groups import LABEL_CAP, LABEL_COVID
from dsan_core.paper import PAPER
from dsan_core.prediction_table import (
    BASELINES,
    MODEL_NAMES,
    SHIPPED,
    ordered_models,
)

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


def p_value(value: Any, star: bool = True) -> str:
    if _missing(value):
        return NOT_AVAILABLE
    p = float(value)
    text = "<0.001" if p < 0.001 else f"{p:.3g}"
    return text + ("*" if star and p < SIGNIFICANCE else "")


def _fold(fold: Any, pooled: str = "pooled") -> str:
    return pooled if _missing(fold) else str(int(fold))


def model_name(model: str) -> str:
    name = MODEL_NAMES.get(model, model)
    return f"{name} (not in the paper)" if model in BASELINES else name


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


def _test_aggregate(model: str) -> str:
    return AGG_AVERAGED if model == SHIPPED else AGG_MEAN


def _count_row(metrics: pd.DataFrame, model: str, set_name: str,
               bin_name: str) -> pd.Series | None:
    aggregate = AGG_POOLED if set_name == SET_TV else _test_aggregate(model)
    rows = metrics.loc[(metrics["model"] == model) & (metrics["set"] == set_name)
                       & (metrics["aggregate"] == aggregate) & (metrics["bin"] == bin_name)]
    return None if rows.empty else rows.iloc[0]


def _counts(metrics: pd.DataFrame, model: str, set_name: str,
            bin_name: str) -> tuple[str, str, str]:
    row = _count_row(metrics, model, set_name, bin_name)
    if row is None:
        return NOT_AVAILABLE, NOT_AVAILABLE, NOT_AVAILABLE
    return str(int(row["n_covid"])), str(int(row["n_cap"])), str(int(row["n_patients"]))


def n_text(metrics: pd.DataFrame, model: str, set_name: str, bin_name: str = BIN_ALL) -> str:
    """'scans (COVID/CAP), patients' behind a model's cell, or n/a."""
    row = _count_row(metrics, model, set_name, bin_name)
    if row is None:
        return NOT_AVAILABLE
    covid, cap = int(row["n_covid"]), int(row["n_cap"])
    return f"{covid + cap} ({covid}/{cap}), {int(row['n_patients'])} pt"


def _cell(values: dict[tuple[str, str, str, str, str], float], model: str, set_name: str,
          bin_name: str, metric: str) -> str:
    if set_name == SET_TV:
        return number(values.get((model, SET_TV, AGG_POOLED, bin_name, metric)))
    if model == SHIPPED:
        return number(values.get((model, "test", AGG_AVERAGED, bin_name, metric)))
    return _mean_std(values.get((model, "test", AGG_MEAN, bin_name, metric)),
                     values.get((model, "test", AGG_STD, bin_name, metric)))


def _threshold_of(thresholds: pd.DataFrame | None, model: str) -> str:
    if thresholds is None:
        return NOT_AVAILABLE
    source = ATT_DS if model == SHIPPED else model
    rows = thresholds.loc[(thresholds["model"] == source) & thresholds["fold"].isna()]
    return NOT_AVAILABLE if rows.empty else number(rows["threshold"].iloc[0])


def _paper(model: str, column: str) -> str:
    paper = PAPER.table_ii.get(model)
    return "-" if paper is None else number(paper.get(column))


def table_ii(metrics: pd.DataFrame, thresholds: pd.DataFrame | None = None) -> DisplayTable:
    """Table II: TV AUC (pooled) and the test metrics (mean ± std over fold models; the
    shipped model's fold-averaged value), each beside the paper's; n and the threshold."""
    values = _lookup(metrics)
    header = ["Model", "TV AUC", "paper"]
    for metric in CLASSIFICATION_METRICS:
        header += [f"Test {METRIC_NAMES[metric]}", "paper"]
    header += ["Threshold", "TV n", "Test n"]
    rows = []
    for model in ordered_models(metrics["model"]):
        tv = _cell(values, model, SET_TV, BIN_ALL, AUC)
        if model == ATT_DS and tv != NOT_AVAILABLE:
            tv += " in-sample"
        row = [model_name(model), tv, _paper(model, "tv_auc")]
        for metric in CLASSIFICATION_METRICS:
            row += [_cell(values, model, "test", BIN_ALL, metric), _paper(model, metric)]
        row += [_threshold_of(thresholds, model), n_text(metrics, model, SET_TV),
                n_text(metrics, model, "test")]
        rows.append(row)
    return DisplayTable(
        "Table II: TV (pooled out-of-fold) and test (mean ± std over fold models)", header,
        rows, "P(COVID) >= threshold is COVID; the threshold column is the test one (TV "
        "rows use nested ones, see 'Thresholds'). std with ddof = 1. DS in-sample: its "
        "weights were searched on the same TV predictions; the nested row is the honest TV "
        "number. Shipped: one fold-averaged model, no ± . Baselines are untrained. n: scans "
        "(COVID/CAP), patients.")


def table_iii(metrics: pd.DataFrame, set_name: str) -> DisplayTable:
    """Table III for one set: per analysis bin and model, scan and patient counts beside
    the paper's counts, and the five metrics."""
    values = _lookup(metrics)
    header = ["Bin", "Model", "COVID", "CAP", "Patients", "paper COVID", "paper CAP",
              *(METRIC_NAMES[m] for m in CLASSIFICATION_METRICS)]
    rows = []
    models = [m for m in ordered_models(metrics["model"])
              if _count_row(metrics, m, set_name, BIN_ALL) is not None]
    for bin_name in BINS[1:]:
        paper_covid = PAPER.scan_counts[(set_name, LABEL_COVID)][bin_name]
        paper_cap = PAPER.scan_counts[(set_name, LABEL_CAP)][bin_name]
        for model in models:
            covid, cap, patients = _counts(metrics, model, set_name, bin_name)
            rows.append([bin_name, model_name(model), covid, cap, patients, str(paper_covid),
                         str(paper_cap),
                         *(_cell(values, model, set_name, bin_name, m)
                           for m in CLASSIFICATION_METRICS)])
    label = "TV (pooled folds)" if set_name == SET_TV else "test (mean ± std over fold models)"
    return DisplayTable(f"Table III: by infection-ratio bin, {label}", header, rows,
                        "The paper's per-bin counts; its per-bin metrics are not restated "
                        "in METHOD.md. AUC is n/a in a bin with one class.")


def averaged_table(metrics: pd.DataFrame) -> DisplayTable:
    """The fold-averaged models on test, each ONE model (the shipped one for DS), with
    patient-bootstrap intervals: the basis for claims on the test set."""
    rows = metrics.loc[(metrics["aggregate"] == AGG_AVERAGED) & (metrics["bin"] == BIN_ALL)]
    out = []
    for model in ordered_models(rows["model"]):
        part = {r["metric"]: r for r in _rows(rows.loc[rows["model"] == model])}
        out.append([model_name(model), n_text(metrics, model, "test"), *(
            f"{number(part[m]['value'])} [{number(part[m]['ci_low'])}, "
            f"{number(part[m]['ci_high'])}]" if m in part else NOT_AVAILABLE
            for m in CLASSIFICATION_METRICS)])
    header = ["Model", "n", *(METRIC_NAMES[m] for m in CLASSIFICATION_METRICS)]
    return DisplayTable("Fold-averaged models on test (one model each; patient-bootstrap "
                        "intervals)", header, out,
                        "Per scan, the mean P(COVID) over the fold models (DS: the shipped "
                        "model, each branch averaged, then DS with the all-TV weights), at "
                        "the model's all-TV threshold. n: scans (COVID/CAP), patients.")


def threshold_display(thresholds: pd.DataFrame) -> DisplayTable:
    rows = []
    for model in ordered_models(thresholds["model"]):
        part = thresholds.loc[thresholds["model"] == model]
        full = part.loc[part["fold"].isna()]
        nested = part.loc[part["fold"].notna()].sort_values("fold")
        rows.append([model_name(model),
                     NOT_AVAILABLE if full.empty else number(full["threshold"].iloc[0]),
                     NOT_AVAILABLE if full.empty else str(full["rule"].iloc[0]),
                     NOT_AVAILABLE if full.empty else str(int(full["n_scans"].iloc[0])),
                     ", ".join(f"{int(f)}: {number(t)}" for f, t in
                               zip(nested["fold"], nested["threshold"], strict=True))])
    return DisplayTable("Thresholds", ["Model", "Test (all TV)", "Rule", "Chosen on scans",
                                       "TV fold k (from the other folds)"], rows,
                        "The shipped model uses the DS (all-TV weights) threshold.")


def interval_table(metrics: pd.DataFrame) -> DisplayTable:
    """Every metric with its bootstrap interval, bin 'all': TV pooled, test mean over fold
    models, test fold-averaged model."""
    rows = metrics.loc[(metrics["bin"] == BIN_ALL) & metrics["aggregate"].isin(
        [AGG_POOLED, AGG_MEAN, AGG_AVERAGED])]
    out = []
    for model in ordered_models(rows["model"]):
        for set_name, aggregate, label in ((SET_TV, AGG_POOLED, "tv"),
                                           ("test", AGG_MEAN, "test (fold mean)"),
                                           ("test", AGG_AVERAGED, "test (fold-averaged)")):
            part = rows.loc[(rows["model"] == model) & (rows["set"] == set_name)
                            & (rows["aggregate"] == aggregate)]
            if part.empty:
                continue
            cells = {r["metric"]: f"{number(r['value'])} [{number(r['ci_low'])}, "
                                  f"{number(r['ci_high'])}]" for r in _rows(part)}
            first = part.iloc[0]
            n = (f"{int(first['n_covid']) + int(first['n_cap'])} ({int(first['n_covid'])}/"
                 f"{int(first['n_cap'])}), {int(first['n_patients'])} pt")
            out.append([model_name(model), label, n,
                        *(cells.get(m, NOT_AVAILABLE) for m in (*CLASSIFICATION_METRICS, ECE))])
    header = ["Model", "Set", "n", *(METRIC_NAMES[m] for m in (*CLASSIFICATION_METRICS, ECE))]
    return DisplayTable("Metrics with patient-level bootstrap intervals", header, out,
                        "value [low, high]; test (fold mean): the mean over fold models and "
                        "the interval of that mean; n: scans (COVID/CAP), patients.")


def metrics_appendix(metrics: pd.DataFrame) -> DisplayTable:
    header = ["Model", "Set", "Aggregate", "Fold", "Bin", "Metric", "Value", "CI low",
              "CI high", "COVID", "CAP", "Patients"]
    rows = [[r["model"], r["set"], r["aggregate"], _fold(r["fold"], ""), r["bin"],
             r["metric"], number(r["value"]), number(r["ci_low"]), number(r["ci_high"]),
             str(r["n_covid"]), str(r["n_cap"]), str(r["n_patients"])]
            for r in _rows(metrics)]
    return DisplayTable("All metrics (long table)", header, rows, folded=True)


def t_test_table(comparisons: pd.DataFrame, bins: Sequence[str] = (BIN_ALL,)) -> DisplayTable:
    rows = comparisons.loc[(comparisons["test"] == TEST_PAIRED_T)
                           & comparisons["bin"].isin(bins)]
    out = [[model_name(r["model_a"]), model_name(r["model_b"]), r["bin"],
            METRIC_NAMES.get(r["metric"], r["metric"]), number(r["estimate"]),
            number(r["statistic"], 2), p_value(r["p_value"], star=False),
            p_value(r["p_holm"]), str(r["n"])]
           for r in _rows(rows)]
    return DisplayTable(
        "Paired t-tests across fold models (test set, the paper's test)"
        + ("" if len(bins) > 1 else ", all scans"),
        ["Model A", "Model B", "Bin", "Metric", "Mean A - B", "t", "p", "p (Holm)", "Folds"],
        out, "The fold models score the same test scans, so the folds are not independent "
        "samples and these p-values are optimistic; see the DeLong tests between the "
        "fold-averaged models. t and p are n/a where the per-fold differences are all equal. "
        "* Holm-adjusted p < 0.01 within this table.", folded=len(bins) > 1)


def delong_table(comparisons: pd.DataFrame, bins: Sequence[str] = (BIN_ALL,)) -> DisplayTable:
    rows = comparisons.loc[(comparisons["test"] == TEST_DELONG)
                           & comparisons["bin"].isin(bins)]
    kind = {SET_TV: "tv (out-of-fold)", "test": "test (fold-averaged)"}
    out = [[model_name(r["model_a"]), model_name(r["model_b"]), kind.get(r["set"], r["set"]),
            r["bin"], number(r["estimate"]), number(r["statistic"], 2),
            p_value(r["p_value"], star=False), p_value(r["p_holm"]), str(r["n"])]
           for r in _rows(rows)]
    return DisplayTable(
        "DeLong tests of paired AUCs" + ("" if len(bins) > 1 else ", all scans"),
        ["Model A", "Model B", "Set", "Bin", "AUC A - B", "z", "p", "p (Holm)", "Scans"], out,
        "TV: the nested DS stands for DS (the in-sample one is not tested). Test: one "
        "fold-averaged model each (Shipped for DS). * Holm-adjusted p < 0.01 within each "
        "set of this table.", folded=len(bins) > 1)


def ece_table(metrics: pd.DataFrame) -> DisplayTable:
    values = _lookup(metrics)
    rows = [[model_name(m), _cell(values, m, SET_TV, BIN_ALL, ECE),
             n_text(metrics, m, SET_TV), _cell(values, m, "test", BIN_ALL, ECE),
             n_text(metrics, m, "test")] for m in ordered_models(metrics["model"])]
    return DisplayTable("Expected calibration error", ["Model", "TV", "TV n", "Test",
                                                       "Test n"], rows,
                        "n: scans (COVID/CAP), patients.")


def reliability_display(reliability: pd.DataFrame) -> DisplayTable:
    header = ["Model", "Set", "Fold", "P(COVID) bin", "Scans", "Mean P(COVID)",
              "COVID fraction"]
    rows = [[model_name(r["model"]), r["set"], _fold(r["fold"]),
             f"{r['bin_low']:.2f}-{r['bin_high']:.2f}", str(r["n_scans"]),
             number(r["mean_predicted"]), number(r["fraction_covid"])]
            for r in _rows(reliability)]
    return DisplayTable("Reliability-diagram data", header, rows, folded=True)


def faithfulness_display(faithfulness: pd.DataFrame) -> DisplayTable:
    rows = [[model_name(r["model"]) + (" (Grad-CAM)" if r["model"] == RN34_US else ""),
             r["bin"], str(r["n_maps"]), _mean_std(r["mass_inside_mean"], r["mass_inside_std"]),
             number(r["chance_mean"]), _mean_std(r["lift_mean"], r["lift_std"]),
             number(r["pointing_rate"]), str(r["n_deletions"]), number(r["deletion_drop_mean"]),
             number(r["random_drop_mean"])] for r in _rows(faithfulness)]
    return DisplayTable("Attention faithfulness on COVID test scans (inside the lung)",
                        ["Map", "Bin", "Maps", "Mass inside infection", "Chance (uniform)",
                         "Lift", "Pointing-game hits", "Deletions", "Drop (top voxels)",
                         "Drop (random voxels)"],
                        rows, "Maps scored inside the lung. Mass: share of the map's lung "
                        "mass in the infection, mean ± std over maps; chance: the infection's "
                        "share of the lung, which a uniform map would score (also the hit "
                        "rate of a random point); lift: mass / chance per map (1 = chance). "
                        "Hits: fraction of maps whose maximum lies in the infection. Drop: "
                        "P(COVID) minus P(COVID) with the map's top lung voxels set to 0; "
                        "random: as many lung voxels at random (the control).")
