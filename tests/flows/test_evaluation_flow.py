"""Ensemble, evaluation and predict on the test-profile pipeline's data root."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from dsan_core.branches import MODELS
from dsan_core.dicom import pseudonymise, resolve_pseudonym_key
from dsan_core.synthetic import plan_cohort
from flows.cli import app
from storage.layout import DataLayout
from storage.tables import read_table

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


def test_the_report_has_every_table_and_figure(pipeline_root: Path) -> None:
    layout = DataLayout(pipeline_root)
    predictions = read_table(layout, "predictions")
    assert set(predictions["branch"]) == set(MODELS)
    metrics = read_table(layout, "metrics")
    assert set(metrics["model"]) == set(MODELS) and set(metrics["set"]) == {"tv", "test"}
    assert {"paired_t", "delong"} <= set(read_table(layout, "comparisons")["test"])
    assert len(read_table(layout, "reliability")) and len(read_table(layout, "faithfulness"))
    html = layout.report("evaluation", "report.html").read_text()
    markdown = layout.report("evaluation", "report.md").read_text()
    for title in ("Table II", "Table III", "Provenance", "Dual-sampling ensemble weights",
                  "Statistics", "Calibration", "Attention faithfulness"):
        assert title in html and title in markdown, title
    for figure in ("roc", "reliability", "attention", "ensemble"):
        assert (layout.report("evaluation", f"figures/{figure}.png")).stat().st_size > 0
        assert f"figures/{figure}.png" in markdown
    assert len(re.findall(r'src="data:image/png;base64,', html)) == 4
    assert not re.search(r'(src|href)="(https?:|//|file:)', html)  # self-contained
    weights = json.loads(layout.report("ensemble", "weights.json").read_text())
    assert 0 <= weights["w_extreme"] <= 1 and weights["searched"]


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
