"""Ensemble, evaluation and predict on the test-profile pipeline's data root."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from dsan_core.branches import MODELS
from dsan_core.dicom import pseudonymise, resolve_pseudonym_key
from dsan_core.synthetic import plan_cohort
from flows.cli import app
from storage.layout import DataLayout
from storage.tables import read_table, read_table_file

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


def test_the_report_has_every_table_and_figure(pipeline_root: Path) -> None:
    layout = DataLayout(pipeline_root)
    predictions = read_table(layout, "predictions")
    assert set(predictions["branch"]) == {*MODELS, "att_ds_nested"}
    nested = predictions[predictions["branch"] == "att_ds_nested"]
    assert set(nested["set"]) == {"val"}
    assert len(nested) == (predictions["branch"].eq("att_ds") & predictions["set"].eq("val")).sum()
    baselines = read_table_file(layout.prediction_part("baselines"), "predictions")
    assert set(baselines["branch"]) == {"base_intensity", "base_ratio", "base_hand"}
    metrics = read_table(layout, "metrics")
    assert set(metrics["model"]) == {*MODELS, "att_ds_nested", "shipped", "base_intensity",
                                     "base_ratio", "base_hand"}
    assert set(metrics["set"]) == {"tv", "test"}
    assert (metrics["n_patients"] > 0).all()
    comparisons = read_table(layout, "comparisons")
    assert {"paired_t", "delong"} <= set(comparisons["test"])
    assert comparisons["p_holm"].notna().any()
    thresholds = read_table(layout, "thresholds")
    assert set(thresholds["model"]) >= {*MODELS, "base_hand"}
    assert len(read_table(layout, "reliability"))
    faithfulness = read_table(layout, "faithfulness")
    chance = faithfulness["chance"].dropna()  # NaN where a scan's lesion vanished at this size
    assert len(chance) and chance.between(0, 1).all()
    assert faithfulness["deletion_drop"].notna().any()
    html = layout.report("evaluation", "report.html").read_text()
    markdown = layout.report("evaluation", "report.md").read_text()
    for title in ("How to read this", "Table II", "Table III", "Provenance",
                  "Dual-sampling ensemble weights", "Nested weights", "Thresholds",
                  "Statistics", "Fold-averaged models", "Calibration", "Attention faithfulness",
                  "not in the paper", "in-sample"):
        assert title in html and title in markdown, title
    assert markdown.index("How to read this") < markdown.index("Table II")
    # The networks the run trained, from the profile it ran with, are named.
    assert "**Networks.**" in markdown and "feature stride" in markdown
    for figure in ("roc", "reliability", "attention", "ensemble"):
        assert (layout.report("evaluation", f"figures/{figure}.png")).stat().st_size > 0
        assert f"figures/{figure}.png" in markdown
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 4
    assert not re.search(r'(src|href)="(https?:|//|file:)', html)  # self-contained
    weights = json.loads(layout.report("ensemble", "weights.json").read_text())
    assert 0 <= weights["w_extreme"] <= 1 and weights["searched"]
    assert sorted(f["fold"] for f in weights["nested"]) == sorted(set(nested["fold"]))


def test_the_shipped_row_is_the_fold_mean_of_the_ds_test_predictions(
        pipeline_root: Path) -> None:
    layout = DataLayout(pipeline_root)
    predictions = read_table(layout, "predictions")
    labels = read_table(layout, "groups").set_index("scan_id")["label"]
    ds = predictions[(predictions["branch"] == "att_ds") & (predictions["set"] == "test")]
    mean = ds.groupby("scan_id")["probability"].mean()
    metrics = read_table(layout, "metrics")
    row = metrics[(metrics["model"] == "shipped") & (metrics["bin"] == "all")
                  & (metrics["metric"] == "auc")].iloc[0]
    expected = roc_auc_score((labels.loc[mean.index] == "COVID").to_numpy(), mean.to_numpy())
    assert row["value"] == pytest.approx(expected)
    assert row["n_covid"] + row["n_cap"] == len(mean)


def test_dsan_report_prints_table_ii_with_the_nested_and_baseline_rows(
        pipeline_root: Path) -> None:
    result = CliRunner().invoke(app, ["report", "--data-root", str(pipeline_root)])
    assert result.exit_code == 0, result.output
    assert "Attention RN34 + DS (nested weights)" in result.output
    assert "Baseline: hand features (not in the paper)" in result.output
    assert "Shipped: DS of fold-averaged branches" in result.output


def test_predict_gives_a_map_on_the_ct_grid_and_the_evaluations_probability(
        pipeline_copy: Path, cohort: Path, test_config) -> None:  # type: ignore[no-untyped-def]
    layout = DataLayout(pipeline_copy)
    plan = plan_cohort(test_config.synth)
    key = resolve_pseudonym_key(test_config.ingest, None)
    splits = read_table(layout, "splits")
    test_ids = set(splits.loc[splits["set"] == "test", "scan_id"])
    study = next(s for s in plan.studies if s.role == "cohort"
                 and pseudonymise("series", s.series_uid(2), key) in test_ids)
    scan_id = pseudonymise("series", study.series_uid(2), key)
    folder = cohort / "dicom" / f"P{study.patient_number:04d}" / f"S{study.study_number:04d}"
    out = pipeline_copy / "new"
    result = CliRunner().invoke(app, [
        "predict", "--dicom", str(folder), "--masks", str(cohort / "masks"), "--out", str(out),
        "--json", "--profile", "test", "--data-root", str(pipeline_copy)])
    assert result.exit_code == 0, result.output
    record = next(json.loads(line) for line in result.output.splitlines()
                  if line.startswith("{"))
    assert record["scan_id"] == scan_id and record["status"] == "predicted"
    # The same probability as the evaluation stage: the fold models' DS mean.
    ds = read_table(layout, "predictions")
    ds = ds[(ds["branch"] == "att_ds") & (ds["set"] == "test") & (ds["scan_id"] == scan_id)]
    assert record["probability"] == pytest.approx(ds["probability"].mean(), abs=1e-5)
    # The map lies on the CT's grid, so it opens over the CT in 3D Slicer.
    ct = sitk.ReadImage(str(layout.volume(scan_id)))
    heat = sitk.ReadImage(str(out / scan_id / "attention.nii.gz"))
    assert heat.GetSize() == ct.GetSize()
    assert np.allclose(heat.GetOrigin(), ct.GetOrigin())
    assert np.allclose(heat.GetSpacing(), ct.GetSpacing())
    assert (out / scan_id / "overlay.png").stat().st_size > 0
    table = read_table(layout, "predictions_new")
    assert table.set_index("scan_id").loc[scan_id, "decision"] in ("COVID", "CAP")


def test_predict_refuses_without_a_trained_ensemble(ingested_copy: Path, cohort: Path) -> None:
    result = CliRunner().invoke(app, ["predict", "--dicom", str(cohort / "dicom"), "--profile",
                                      "test", "--data-root", str(ingested_copy)])
    assert result.exit_code == 2
    assert "no trained ensemble in this data root" in result.output
