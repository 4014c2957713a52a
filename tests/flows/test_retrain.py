"""Retraining on a new drop: the data root grows, known patients stay where they were,
the new ensemble meets the champion / challenger gate, people can overrule it."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.pipeline import retrain_flow
from storage.inputs import ExportLocation
from storage.layout import DataLayout
from storage.tables import read_table

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


def test_retrain_gate_promote_and_rollback(pipeline_copy: Path, drop: Path,
                                           test_config) -> None:  # type: ignore[no-untyped-def]
    layout = DataLayout(pipeline_copy)
    before = read_table(layout, "splits").set_index("scan_id")
    first = read_table(layout, "models")
    assert first["status"].tolist() == ["promoted"]  # a data root's first ensemble
    champion = first["model_id"].iloc[0]

    # A new drop (conftest): other patients (another seed), the same sites and dates.
    export = ExportLocation(dicom_root=drop / "dicom", labels=drop / "labels.csv",
                            masks=drop / "masks")
    result = retrain_flow(export, test_config, pipeline_copy)
    assert result.ingest.summary.known_scans == len(before)
    after = read_table(layout, "splits").set_index("scan_id")
    assert len(after) > len(before)
    kept = after.loc[before.index]
    assert (kept["set"] == before["set"]).all()
    assert (kept["fold"].fillna(-1) == before["fold"].fillna(-1)).all()

    models = read_table(layout, "models").set_index("model_id")
    assert len(models) == 2 and result.model is not None
    challenger = result.model.model_id
    assert result.model.champion_id == champion
    decisions = read_table(layout, "model_decisions")
    gate = decisions[decisions["model_id"] == challenger].iloc[-1]
    assert gate["actor"] == "gate" and gate["champion_id"] == champion
    assert '"auc"' in gate["numbers"] and gate["n_scans"] > 0
    promoted = models.index[models["status"] == "promoted"].tolist()
    assert promoted == [challenger if gate["action"] == "promote" else champion]

    # People overrule the gate; both are recorded.
    runner = CliRunner()
    common = ["--profile", "test", "--data-root", str(pipeline_copy)]
    other = champion if promoted == [challenger] else challenger
    result_promote = runner.invoke(app, ["promote", other[:8], "--reason", "radiologist", *common])
    assert result_promote.exit_code == 0, result_promote.output
    assert read_table(layout, "models").set_index("model_id").loc[other, "status"] == "promoted"
    back = runner.invoke(app, ["rollback", *common])
    assert back.exit_code == 0 and f"to {promoted[0]}" in back.output, back.output
    actions = read_table(layout, "model_decisions")["action"].tolist()
    assert actions[-2:] == ["promote", "rollback"]
    listing = runner.invoke(app, ["models", "--data-root", str(pipeline_copy)])
    assert "radiologist" in listing.output and "promoted" in listing.output
    lineage = runner.invoke(app, ["lineage", challenger, "--data-root", str(pipeline_copy)])
    assert lineage.exit_code == 0, lineage.output
    assert "split version" in lineage.output and "volume sha256" in lineage.output
    via_report = runner.invoke(app, ["lineage", "reports/evaluation/report.md", "--data-root",
                                     str(pipeline_copy)])
    assert f"model {challenger}" in via_report.output
