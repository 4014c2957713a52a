"""The whole pipeline through the CLI (`dsan run`, the session's `pipeline_cli_run`), then
a rerun that is all cache hits; user errors exit with code 2."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dsan_core.groups import SAMPLING_GROUPS
from flows.cli import app
from storage.layout import DataLayout
from storage.lineage import read_lineage
from storage.tables import read_table
from tests.flows.conftest import CliRun

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.mark.slow
def test_dsan_run_then_rerun_is_cached(pipeline_cli_run: CliRun, tmp_path: Path) -> None:
    # The first run is the session's `dsan run` (conftest), shared with every test that
    # reads its data root; the rerun goes to a copy of that root.
    runner = CliRunner()
    first = pipeline_cli_run
    assert first.exit_code == 0, first.output
    for stage in ("[ingest]", "[segment]", "[split]", "[preprocess]"):
        assert stage in first.output
    # Progress of the long stages, and the wall time of every stage at the end.
    assert "segmenting scans: " in first.output and "pre-processing scans: " in first.output
    assert "wall time per stage" in first.output and "preprocess" in first.output
    root = tmp_path / "data"
    shutil.copytree(first.root, root)
    args = first.args_for(root)
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    lineage = read_lineage(DataLayout(root))
    latest = lineage.groupby("stage").tail(1)
    assert latest["cache_hit"].all(), latest[["stage", "cache_hit"]].to_string()
    assert {"ingest", "segment", "groups", "split", "preprocess"} <= set(
        lineage["stage"]), sorted(set(lineage["stage"]))
    # The test profile segments with the imported ground truth (the VB-Net is tested in
    # test_segmentation_flow), so every training fold holds all four sampling groups.
    layout = DataLayout(root)
    groups = read_table(layout, "groups").merge(read_table(layout, "splits"), on="scan_id")
    tv = groups[groups["set"] == "tv"]
    for fold in sorted(tv["fold"].unique()):
        training = tv[tv["fold"] != fold]
        assert set(training["sampling_group"]) == set(SAMPLING_GROUPS), fold

    tables = runner.invoke(app, ["tables", "--data-root", str(root)])
    assert tables.exit_code == 0 and "scans" in tables.output and "preprocessed" in tables.output
    last = runner.invoke(app, ["lineage", "--last", "--data-root", str(root)])
    assert last.exit_code == 0 and "wall time per stage" in last.output
    assert "ingest" in last.output and "yes" in last.output  # the rerun: all cache hits


def test_bad_profile_value_names_the_field(tmp_path: Path) -> None:
    profile = tmp_path / "mine.yaml"
    profile.write_text("preprocess:\n  target_shape: [1, 2]\n")
    result = CliRunner().invoke(app, ["synth", "--profile", str(profile), "--out",
                                      str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "preprocess.target_shape" in result.output


def test_paper_profile_refuses_without_a_key(cohort: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DSAN_PSEUDONYM_KEY", raising=False)
    result = CliRunner().invoke(app, [
        "ingest", "--profile", "paper", "--dicom-root", str(cohort / "dicom"), "--labels",
        str(cohort / "labels.csv"), "--data-root", str(tmp_path / "data")])
    assert result.exit_code == 2, result.output  # a user error, not a crash
    assert "key" in result.output.lower()


@pytest.mark.parametrize(("command", "option", "given", "expected"), [
    ("run", "labels", "a CSV without the columns",
     "labels manifest lacks required column 'patient_id' (found ['a', 'b'])"),
    ("ingest", "masks", "nothing", "expected a folder of masks (--masks), found nothing there"),
    ("ingest", "dicom", "a file",
     "expected a folder as the DICOM root (--dicom-root), found a file"),
    ("retrain", "labels", "nothing", "labels manifest not found"),
    ("predict", "dicom", "a file", "expected a folder as the DICOM root (--dicom), found a file"),
])
def test_a_mistyped_export_is_one_line_before_anything_starts(
        cohort: Path, tmp_path: Path, command: str, option: str, given: str,
        expected: str) -> None:
    bad_csv = tmp_path / "labels.csv"
    bad_csv.write_text("a,b\n1,2\n")
    paths = {"dicom": cohort / "dicom", "labels": cohort / "labels.csv", "masks": cohort / "masks"}
    paths[option] = {"a CSV without the columns": bad_csv, "a file": bad_csv,
                     "nothing": tmp_path / "typo"}[given]
    if command == "predict":
        args = ["--dicom", str(paths["dicom"])]
    else:
        args = ["--dicom-root", str(paths["dicom"]), "--labels", str(paths["labels"]),
                "--masks", str(paths["masks"])]
    root = tmp_path / "data"
    result = CliRunner().invoke(app, [command, *args, "--profile", "test", "--data-root",
                                      str(root)])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == f"error: {expected}"
    assert "prefect" not in os.listdir(root)  # refused before Prefect started


@pytest.mark.parametrize("command", [
    ["train-seg"], ["segment"], ["split"], ["audit-splits"], ["preprocess"], ["train"],
    ["ensemble"], ["evaluate"], ["masks", "export", "--n", "2"],
])
def test_a_stage_on_a_data_root_without_scans_is_one_line_before_anything_starts(
        tmp_path: Path, command: list[str]) -> None:
    root = tmp_path / "mistyped"
    result = CliRunner().invoke(app, [*command, "--profile", "test", "--data-root", str(root)])
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("error: table 'scans' is missing: run the stage that "
                                     "writes it first")
    assert "prefect" not in os.listdir(root)


def test_predict_on_a_data_root_without_a_model_is_one_line_before_anything_starts(
        cohort: Path, tmp_path: Path) -> None:
    root = tmp_path / "no-model"
    result = CliRunner().invoke(app, ["predict", "--dicom", str(cohort / "dicom"), "--profile",
                                      "test", "--data-root", str(root)])
    assert result.exit_code == 2, result.output
    assert " ".join(result.output.split()) == ("error: no trained ensemble in this data root: "
                                               "run dsan run (DICOM to a promoted model) first")
    assert "prefect" not in os.listdir(root)
