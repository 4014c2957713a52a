"""`dsan predict` on a data root whose classifier trained on ground-truth masks: a new
study without masks, from a site the cohort never had, gets a probability; the row names
the segmenter (the VB-Net trained on the scans with ground truth) and marks it weaker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsan_core.synthetic import generate_cohort
from flows.cli import app
from storage.layout import DataLayout
from storage.registry import promoted_record
from storage.tables import read_table

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


def test_predict_without_masks_on_a_ground_truth_data_root(
        pipeline_copy: Path, tmp_path: Path, test_config) -> None:  # type: ignore[no-untyped-def]
    assert test_config.segmentation.method == "ground_truth"
    record = promoted_record(DataLayout(pipeline_copy))
    assert record is not None
    card = record["segmenter"]["predict"]
    assert card["method"] == "vbnet" and card["weaker"] and card["held_out"] is not None
    new = tmp_path / "new"
    generate_cohort(test_config.synth.model_copy(update={
        "seed": 4242, "n_patients": 2, "include_broken": False, "sites": ("site-z",)}), new)
    result = CliRunner().invoke(app, [
        "predict", "--dicom", str(new / "dicom"), "--out", str(tmp_path / "out"), "--json",
        "--profile", "test", "--data-root", str(pipeline_copy)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert records and all(r["status"] == "predicted" for r in records), records
    # Predict decides at the DS threshold the evaluation chose on all of TV.
    thresholds = read_table(DataLayout(pipeline_copy), "thresholds")
    chosen = thresholds[(thresholds["model"] == "att_ds") & thresholds["fold"].isna()]
    assert record["decision"]["threshold"] == pytest.approx(float(chosen["threshold"].iloc[0]))
    for r in records:
        assert 0.0 <= r["probability"] <= 1.0
        assert r["segmenter"] == card["tag"] and r["weaker_segmenter"] is True
        cut = record["decision"]["threshold"]
        assert r["decision"] == ("COVID" if r["probability"] >= cut else "CAP")
    table = read_table(DataLayout(pipeline_copy), "predictions_new")
    assert set(table["segmenter"]) == {card["tag"]} and table["weaker_segmenter"].all()

    text = CliRunner().invoke(app, [
        "predict", "--dicom", str(new / "dicom"), "--out", str(tmp_path / "out"),
        "--profile", "test", "--data-root", str(pipeline_copy)])
    assert text.exit_code == 0, text.output
    flat = " ".join(text.output.split())
    assert f"by {card['tag']} (weaker segmenter)" in flat
    assert "weaker than the ground_truth masks the model was trained on" in flat
