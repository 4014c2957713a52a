"""The evaluation report: Markdown and one self-contained HTML page, as strings.

Order: "How to read this" (`report_guide`: in-sample against nested, baselines, sample
sizes, threshold, tests, seed, from the tables); Table II and Table III beside the
paper's numbers; then provenance (data, models, config and code versions); then the
ensemble search (in-sample and nested), thresholds, statistics, calibration, attention
faithfulness and the figures. Pure: tables, figure PNG bytes and a
provenance record in, text out. The HTML inlines its figures as base64 PNG and its
style sheet, so it references nothing outside itself; the Markdown links each figure
as `<figure_dir>/<name>.png`, where the caller writes the same bytes.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from dsan_core.errors import InputError
from dsan_core.evaluation.report_guide import how_to_read
from dsan_core.evaluation.report_tables import (
    DisplayTable,
    averaged_table,
    delong_table,
    ece_table,
    faithfulness_display,
    interval_table,
    metrics_appendix,
    number,
    reliability_display,
    t_test_table,
    table_ii,
    table_iii,
    threshold_display,
)
from dsan_core.evaluation.tables import BINS, SET_TV
from dsan_core.paper import PAPER

if TYPE_CHECKING:  # dsan_core.ensemble imports this package
    from dsan_core.ensemble import EnsembleSearch, NestedFold

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class ReportProvenance:
    """What the numbers come from. scan_counts: set ('tv', 'test') -> scans;
    checkpoints: model_key -> content hash; config_fingerprints: config section ->
    fingerprint; code_version: e.g. a git commit or package version."""

    profile: str
    split_version: str
    scan_counts: Mapping[str, int]
    checkpoints: Mapping[str, str]
    config_fingerprints: Mapping[str, str]
    code_version: str
    #: The ensemble the numbers are of (dsan's model registry), "" when unknown.
    model_id: str = ""
    #: The trained networks in words (`TrainConfig.network_summary`), "" when unknown.
    network: str = ""


@dataclass(frozen=True)
class ReportFigure:
    """A PNG figure; `name` is a file stem ([A-Za-z0-9_-]+)."""

    name: str
    caption: str
    png: bytes


@dataclass(frozen=True)
class ReportInputs:
    metrics: pd.DataFrame
    comparisons: pd.DataFrame
    provenance: ReportProvenance
    reliability: pd.DataFrame | None = None
    faithfulness: pd.DataFrame | None = None
    ensemble: EnsembleSearch | None = None
    figures: Sequence[ReportFigure] = field(default_factory=tuple)
    title: str = "dsan evaluation report"
    #: The `thresholds` table (`dsan_core.evaluation.thresholds`).
    thresholds: pd.DataFrame | None = None
    #: The ensemble's nested per-fold weights (`dsan_core.ensemble.nested_ensemble`).
    nested: Sequence[NestedFold] = field(default_factory=tuple)


@dataclass(frozen=True)
class _Section:
    heading: str
    paragraphs: Sequence[str] = ()
    tables: Sequence[DisplayTable] = ()
    figures: Sequence[ReportFigure] = ()


def _check_figures(figures: Sequence[ReportFigure]) -> None:
    names = [f.name for f in figures]
    for figure in figures:
        if not _NAME.match(figure.name):
            raise InputError(f"expected a figure name of letters, digits, '_' or '-', "
                             f"found {figure.name!r}")
        if not figure.png.startswith(_PNG_MAGIC):
            raise InputError(f"expected PNG bytes for figure {figure.name!r}, found "
                             f"{figure.png[:8]!r}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"expected distinct figure names, found duplicates {duplicates}")


def _provenance(p: ReportProvenance) -> _Section:
    counts = ", ".join(f"{name}: {count} scans" for name, count in p.scan_counts.items())
    return _Section("Provenance", tables=[
        DisplayTable("Data and code", ["Item", "Value"], [
            ["model", p.model_id or "n/a"], ["profile", p.profile],
            ["networks", p.network or "n/a"], ["scans", counts],
            ["split version", p.split_version], ["code version", p.code_version]]),
        DisplayTable("Model checkpoints", ["Model key", "Content hash"],
                     [[k, v] for k, v in sorted(p.checkpoints.items())]),
        DisplayTable("Configuration", ["Section", "Fingerprint"],
                     [[k, v] for k, v in sorted(p.config_fingerprints.items())]),
    ])


def _ensemble(search: EnsembleSearch | None, nested: Sequence[NestedFold]) -> _Section:
    tables = []
    if search is not None:
        w = search.weights
        tables.append(DisplayTable(
            f"Weight search on all TV out-of-fold predictions ({search.n_scans} scans), "
            f"objective {search.objective}: the shipped model's weights",
            ["Point", "w_extreme", "w_middle", f"{search.objective} (in-sample)"],
            [["chosen", number(w.w_extreme, 2), number(w.w_middle, 2), number(search.value, 4)],
             ["paper", number(PAPER.ensemble_weights[0], 2),
              number(PAPER.ensemble_weights[1], 2), number(search.paper_value, 4)]],
            "In-sample: the objective is measured on the predictions the weights were "
            "chosen on."))
    if nested:
        tables.append(DisplayTable(
            "Nested weights: fold k's searched on the other folds only",
            ["Fold", "w_extreme", "w_middle", "objective on the other folds",
             "searched on scans", "scored scans"],
            [[str(f.fold), number(f.weights.w_extreme, 2), number(f.weights.w_middle, 2),
              number(f.value, 4), str(f.n_searched), str(f.n_scored)] for f in nested],
            "The union of the scored folds is the nested DS row of Table II."))
    return _Section("Dual-sampling ensemble weights", tables=tables)


def _sections(inputs: ReportInputs) -> list[_Section]:
    _check_figures(inputs.figures)
    m, c = inputs.metrics, inputs.comparisons
    sections = [
        _Section("How to read this", paragraphs=how_to_read(
            m, c, inputs.thresholds, inputs.nested, inputs.faithfulness,
            inputs.provenance.network)),
        _Section("Results beside the paper", paragraphs=[
            "Ours beside the paper's published numbers (real data; a synthetic cohort is "
            "not expected to reach them). TV: the validation folds' out-of-fold "
            "predictions pooled. Test: each fold's model scored on the whole test set, "
            "mean ± sample std (ddof = 1) over the fold models; the shipped model once."],
                 tables=[table_ii(m, inputs.thresholds), table_iii(m, "test"),
                         table_iii(m, SET_TV)]),
        _provenance(inputs.provenance),
    ]
    if inputs.ensemble is not None or inputs.nested:
        sections.append(_ensemble(inputs.ensemble, inputs.nested))
    if inputs.thresholds is not None:
        sections.append(_Section("Thresholds", tables=[threshold_display(inputs.thresholds)]))
    sections.append(_Section("Statistics", tables=[
        averaged_table(m), delong_table(c), interval_table(m), t_test_table(c),
        t_test_table(c, BINS), delong_table(c, BINS), metrics_appendix(m)]))
    calibration = [ece_table(m)]
    if inputs.reliability is not None:
        calibration.append(reliability_display(inputs.reliability))
    sections.append(_Section("Calibration", tables=calibration))
    if inputs.faithfulness is not None:
        sections.append(_Section("Attention faithfulness",
                                 tables=[faithfulness_display(inputs.faithfulness)]))
    if inputs.figures:
        sections.append(_Section("Figures", figures=inputs.figures))
    return sections


def _markdown_table(table: DisplayTable) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    lines = [f"**{table.title}**", "", line(table.header),
             line(["---"] * len(table.header)), *(line(row) for row in table.rows)]
    if table.note:
        lines += ["", f"_{table.note}_"]
    return [*lines, ""]


def render_markdown(inputs: ReportInputs, figure_dir: str = "figures") -> str:
    """The report as Markdown; figures linked as `<figure_dir>/<name>.png`."""
    lines = [f"# {inputs.title}", ""]
    for section in _sections(inputs):
        lines += [f"## {section.heading}", ""]
        lines += [*(p + "\n" for p in section.paragraphs)]
        for table in section.tables:
            lines += _markdown_table(table)
        for figure in section.figures:
            lines += [f"![{figure.caption}]({figure_dir}/{figure.name}.png)", "",
                      f"_{figure.caption}_", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
caption { font-weight: bold; text-align: left; padding-bottom: 0.3em; }
.note { font-size: 0.8em; color: #555; margin-top: -1em; }
figure { margin: 1em 0; } img { max-width: 100%; }
"""


def _html_table(table: DisplayTable) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(str(h))}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>"
                   for row in table.rows)
    out = (f"<table><caption>{esc(table.title)}</caption><thead><tr>{head}</tr></thead>"
           f"<tbody>{body}</tbody></table>")
    if table.note:
        out += f'<p class="note">{esc(table.note)}</p>'
    if table.folded:
        out = f"<details><summary>{esc(table.title)}</summary>{out}</details>"
    return out


def _html_text(text: str) -> str:
    """A paragraph's Markdown emphasis (**bold**) and `code` as HTML, the rest escaped."""
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)


def _html_figure(figure: ReportFigure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    caption = html.escape(figure.caption)
    return (f'<figure id="{figure.name}"><img alt="{caption}" '
            f'src="data:image/png;base64,{data}"><figcaption>{caption}</figcaption></figure>')


def render_html(inputs: ReportInputs) -> str:
    """The report as one self-contained HTML page (inline style, base64 figures)."""
    parts = [f"<h1>{html.escape(inputs.title)}</h1>"]
    for section in _sections(inputs):
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        parts += [f"<p>{_html_text(p)}</p>" for p in section.paragraphs]
        parts += [_html_table(t) for t in section.tables]
        parts += [_html_figure(f) for f in section.figures]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(inputs.title)}</title><style>{_STYLE}</style></head>"
            f"<body>{''.join(parts)}</body></html>\n")
