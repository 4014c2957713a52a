from __future__ import annotations

import base64
import dataclasses
import io
import re
from collections.abc import Callable

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dsan_core.branches import MODEL_NAMES
from dsan_core.config import EnsembleConfig, EvaluationConfig, TrainConfig
from dsan_core.ensemble import (
    EnsembleSearch,
    NestedEnsemble,
    nested_ensemble,
    search_ensemble_weights,
    shipped_predictions,
)
from dsan_core.errors import InputError
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
from dsan_core.paper import PAPER
from tests.dsan_core.evaluation import cohort


def _png(colour: str) -> bytes:
    figure = Figure(figsize=(1, 1), dpi=20)
    FigureCanvasAgg(figure)
    figure.add_subplot().plot([0, 1], [0, 1], color=colour)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _with_ss_ds_and_baselines() -> tuple[pd.DataFrame, EnsembleSearch, NestedEnsemble]:
    predictions = cohort.predictions()
    us = predictions.loc[predictions["branch"] == "att_us"]
    ss = us.assign(branch="att_ss", probability=us["probability"] ** 2,
                   model_key=us["model_key"].str.replace("att_us", "att_ss"))
    rn = predictions.loc[predictions["branch"] == "rn34_us"]
    # A stand-in baseline (the prediction contract is all the report sees).
    base = rn.assign(branch="base_intensity", probability=1.0 - rn["probability"] / 2,
                     model_key="base_intensity")
    predictions = pd.concat([predictions, ss], ignore_index=True)
    config = EnsembleConfig(search_step=0.1)
    search = search_ensemble_weights(predictions, cohort.groups(), config)
    nested = nested_ensemble(predictions, cohort.groups(), config)
    return pd.concat([predictions, search.apply(predictions, cohort.groups()),
                      nested.predictions, base], ignore_index=True), search, nested


@pytest.fixture(scope="module")
def inputs() -> ReportInputs:
    predictions, search, nested = _with_ss_ds_and_baselines()
    groups = cohort.groups()
    config = EvaluationConfig(bootstrap_samples=20)
    shipped = shipped_predictions(predictions, groups, search.weights)
    thresholds = threshold_table(predictions, groups, config)
    metrics = metrics_table(predictions, groups, cohort.splits(), config,
                            thresholds=thresholds, shipped=shipped)
    scores = pd.DataFrame({"scan_id": ["x0", "x1"], "model": ["att_us", "rn34_us"],
                           "fold": [0, 0], "mass_inside": [0.8125, 0.3],
                           "pointing_hit": [1.0, 0.0], "chance": [0.25, 0.1],
                           "lift": [3.25, 3.0], "deletion_drop": [0.2, 0.0],
                           "random_drop": [0.05, 0.01]})
    return ReportInputs(
        metrics=metrics,
        comparisons=comparisons_table(metrics, predictions, groups, shipped),
        provenance=ReportProvenance(
            profile="test", split_version="split-7f3a", scan_counts={"tv": 8, "test": 4},
            checkpoints={"att_us-f0": "sha256:aa11", "rn34_us-f1": "sha256:bb22"},
            config_fingerprints={"evaluation": "fp-eval-01", "ensemble": "fp-ens-02"},
            code_version="commit-c0ffee"),
        reliability=reliability_tables(predictions, groups, n_bins=4),
        faithfulness=faithfulness_table(scores, groups),
        ensemble=search,
        figures=(ReportFigure("roc_curves", "ROC curves per fold", _png("red")),
                 ReportFigure("ensemble_surface", "Ensemble weight surface", _png("blue"))),
        thresholds=thresholds,
        nested=nested.folds,
    )


def test_html_opens_with_tables_ii_and_iii_beside_the_papers_numbers(
        inputs: ReportInputs) -> None:
    page = render_html(inputs)
    first_table = page.index("<table>")
    assert page.index("Table II") < page.index("Table III") < page.index("Provenance")
    assert first_table < page.index("Provenance")
    for model in ("rn34_us", "att_us", "att_ss", "att_ds"):
        assert MODEL_NAMES[model] in page
        assert f"{PAPER.table_ii[model]['auc']:.3f}" in page
    assert "1214" in page and "436" in page  # the paper's test counts per bin


@pytest.mark.parametrize("render", [render_html, render_markdown])
def test_report_contains_every_table_and_provenance_item(
        inputs: ReportInputs, render: Callable[[ReportInputs], str]) -> None:
    text = render(inputs)
    for needle in ("Table II", "Table III", "Provenance", "split-7f3a", "sha256:aa11",
                   "sha256:bb22", "fp-eval-01", "fp-ens-02", "commit-c0ffee",
                   "Dual-sampling ensemble weights", "Paired t-tests", "DeLong",
                   "bootstrap intervals", "All metrics", "Expected calibration error",
                   "Reliability-diagram data", "Attention faithfulness", "0.812",
                   "(Grad-CAM)"):
        assert needle in text, needle
    assert inputs.ensemble is not None
    weights = inputs.ensemble.weights
    assert f"{weights.w_extreme:.2f}" in text and "0.35" in text and "0.96" in text


def test_every_figure_is_inlined_in_the_html(inputs: ReportInputs) -> None:
    page = render_html(inputs)
    for figure in inputs.figures:
        assert base64.b64encode(figure.png).decode() in page
        assert figure.caption in page
    assert page.count("<img ") == len(inputs.figures)


def test_html_references_nothing_outside_itself(inputs: ReportInputs) -> None:
    page = render_html(inputs)
    assert not re.search(r"https?://|<link|<script|@import|url\(", page)
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)


def test_markdown_links_each_figure_file(inputs: ReportInputs) -> None:
    text = render_markdown(inputs, figure_dir="figs")
    assert "](figs/roc_curves.png)" in text and "](figs/ensemble_surface.png)" in text


@pytest.mark.parametrize(
    ("figure", "message"),
    [
        (ReportFigure("../escape", "x", b"\x89PNG\r\n\x1a\n"), "figure name"),
        (ReportFigure("fine", "x", b"GIF89a"), "PNG bytes"),
    ],
)
def test_bad_figures_are_input_errors(inputs: ReportInputs, figure: ReportFigure,
                                      message: str) -> None:
    bad = ReportInputs(inputs.metrics, inputs.comparisons, inputs.provenance,
                       figures=(figure,))
    with pytest.raises(InputError, match=message):
        render_html(bad)


def test_optional_sections_can_be_left_out(inputs: ReportInputs) -> None:
    text = render_markdown(ReportInputs(inputs.metrics, inputs.comparisons, inputs.provenance))
    assert "Table II" in text and "Attention faithfulness" not in text
    assert "Dual-sampling ensemble weights" not in text


@pytest.mark.parametrize("layers, name", [((1, 1, 1, 1), "ResNet10"),
                                          ((2, 2, 2, 2), "ResNet18")])
def test_how_to_read_names_networks_that_are_not_the_papers(
        inputs: ReportInputs, layers: tuple[int, int, int, int], name: str) -> None:
    train = TrainConfig(width=16, layers=layers, feature_stride=8, epochs=10)
    provenance = dataclasses.replace(inputs.provenance, network=train.network_summary())
    text = render_markdown(dataclasses.replace(inputs, provenance=provenance))
    guide = text[text.index("How to read this"):text.index("Table II")]
    assert (f"the networks trained here are a 3D {name} (BasicBlocks {list(layers)} per "
            "stage), width 16, feature stride 8, 10 epochs") in guide
    assert ("the paper trained a 3D ResNet34 (BasicBlocks [3, 4, 6, 3] per stage), width 64, "
            "feature stride 16, 20 epochs") in guide
    assert f"| networks | 3D {name} " in text  # and in the provenance table


def test_how_to_read_says_when_the_networks_are_the_papers(inputs: ReportInputs) -> None:
    provenance = dataclasses.replace(inputs.provenance,
                                     network=TrainConfig().network_summary())
    text = render_markdown(dataclasses.replace(inputs, provenance=provenance))
    assert "**Networks.** The paper's: 3D ResNet34" in text
    # Unknown networks (an older data root): no paragraph, "n/a" in the provenance.
    assert "**Networks.**" not in render_markdown(inputs)
    assert "| networks | n/a |" in render_markdown(inputs)


@pytest.mark.parametrize("render", [render_html, render_markdown])
def test_how_to_read_this_comes_first_and_is_built_from_the_tables(
        inputs: ReportInputs, render: Callable[[ReportInputs], str]) -> None:
    text = render(inputs)
    assert text.index("How to read this") < text.index("Table II")
    metrics = inputs.metrics
    tv = metrics[(metrics["set"] == "tv") & (metrics["bin"] == "all")
                 & (metrics["metric"] == "auc")].set_index("model")["value"]
    shipped = metrics[(metrics["model"] == "shipped") & (metrics["bin"] == "all")
                      & (metrics["metric"] == "auc")].iloc[0]
    for needle in ("in-sample", "nested", f"TV AUC {tv['att_ds']:.3f}",
                   f"TV AUC {tv['att_ds_nested']:.3f}", "not in the paper",
                   f"test AUC {shipped['value']:.3f}", "8 scans of 6 patients (4 COVID, 4 CAP)",
                   "4 scans of 3 patients (2 COVID, 2 CAP)", "Youden", "Holm",
                   "not independent", "one seed", "benchmarks/README.md",
                   "chance level", "lift 3.25"):
        assert needle in text, needle
    weights = [f.weights.w_extreme for f in inputs.nested]
    assert f"w_extreme {min(weights):.2f}-{max(weights):.2f}" in text


def test_table_ii_has_the_nested_shipped_and_baseline_rows_with_n_and_threshold(
        inputs: ReportInputs) -> None:
    table = table_ii(inputs.metrics, inputs.thresholds)
    rows = {row[0]: row for row in table.rows}
    assert list(rows) == ["RN34 + US", "Attention RN34 + US", "Attention RN34 + SS",
                          "Attention RN34 + DS (all-TV weights)",
                          "Attention RN34 + DS (nested weights)",
                          "Shipped: DS of fold-averaged branches",
                          "Baseline: mean lung intensity (not in the paper)"]
    header = list(table.header)
    ds = rows["Attention RN34 + DS (all-TV weights)"]
    assert ds[header.index("TV AUC")].endswith(" in-sample")
    assert rows["Shipped: DS of fold-averaged branches"][header.index("TV AUC")] == "n/a"
    assert "±" not in rows["Shipped: DS of fold-averaged branches"][header.index("Test AUC")]
    base = rows["Baseline: mean lung intensity (not in the paper)"]
    assert base[2] == "-"  # no paper number beside a baseline
    assert base[header.index("TV n")] == "8 (4/4), 6 pt"
    assert base[header.index("Test n")] == "4 (2/2), 3 pt"
    assert ds[header.index("Threshold")] != "n/a"
    assert any("nested" in line for line in text_lines(table))


def test_stars_follow_the_holm_adjusted_p(inputs: ReportInputs) -> None:
    text = render_markdown(inputs)
    assert "p (Holm)" in text and "not independent" in text
