"""`dsan status` and a run agree on every stage's cache key: status looks up the keys the
tasks compute (one function per stage, `tasks._common.contract.StageInputs` / `StageItems`), and
after a run it finds exactly the keys the run recorded in its lineage. Checked on a fresh
root, after a full run, and before and after each kind of change (an empty splits table,
a config change, the export moved, a new export file, a changed mask)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from flows.pipeline import pipeline_flow
from storage.inputs import ExportLocation
from storage.layout import DataLayout
from storage.lineage import read_lineage
from storage.tables import read_table, write_table
from tasks._common.contract import StageRun
from tasks.stages import STAGES
from tasks.status import CHECKS, StageStatus, pipeline_status

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


def _export(root: Path) -> ExportLocation:
    return ExportLocation(dicom_root=root / "dicom", labels=root / "labels.csv",
                          masks=root / "masks")


def _status(root: Path, config, export: ExportLocation) -> dict[str, StageStatus]:  # type: ignore[no-untyped-def]
    with StageRun.open(root) as run:
        return {row.stage: row for row in pipeline_status(run, config, export)}


def _recorded(root: Path, run_id: str) -> dict[str, set[str]]:
    """Internal stage label -> the keys the run recorded (lineage rows: every stage, and
    the trained models; not the per-scan items)."""
    rows = read_lineage(DataLayout(root))
    rows = rows[rows["run_id"] == run_id]
    return {str(stage): set(group["key"]) for stage, group in rows.groupby("stage")}


def _cached(rows: dict[str, StageStatus], through: str) -> dict[str, StageStatus]:
    """Every stage up to `through` is cached, having looked up its own key."""
    for name in _upto(through):
        assert rows[name].state == "cached" and name in rows[name].keys, rows[name]
    return rows


def _upto(through: str) -> list[str]:
    return list(STAGES)[:list(STAGES).index(through) + 1]


def _agree(rows: dict[str, StageStatus], root: Path, run_id: str, through: str) -> None:
    """The keys status looked up for the stages up to `through` are the keys the run
    `run_id` recorded, for every label the run records (every stage, and each trained
    model; not the per-scan items). Up to the first stale stage: the inputs of the
    stages after it are its outputs, which the run changes."""
    recorded = _recorded(root, run_id)
    for name in _upto(through):
        row = rows[name]
        assert name in row.keys and name in recorded, (name, row.keys.keys(), recorded.keys())
        for label, keys in row.keys.items():
            if label in recorded:
                assert set(keys) == recorded[label], (name, label)
        if row.state != "cached":
            return


def test_status_and_run_agree_on_every_stage_key(pipeline_copy: Path, cohort: Path,
                                                 test_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert list(CHECKS) == list(STAGES)
    assert all(labels[0] == name for name, labels in STAGES.items())
    root, config, export = pipeline_copy, test_config, _export(cohort)
    layout = DataLayout(root)

    # A fresh root: nothing to compare, and nothing raises.
    fresh = _status(tmp_path / "fresh", config, export)
    assert {row.state for row in fresh.values()} == {"never run"}

    # After a full run every stage is cached under the key a rerun looks up.
    before = _cached(_status(root, config, export), "evaluate")
    run = pipeline_flow(export, config, root).run_id
    assert read_lineage(layout).query("run_id == @run")["cache_hit"].all()
    _agree(before, root, run, "evaluate")

    # An empty splits table is "no split yet" for status as for the split task.
    write_table(layout, "splits", read_table(layout, "splits").iloc[0:0])
    before = _status(root, config, export)
    assert before["split"].detail == "output 'splits' changed since it was written"
    run = pipeline_flow(export, config, root, until="split").run_id
    _agree(before, root, run, "split")

    # A config change.
    changed = config.model_copy(update={"split": config.split.model_copy(
        update={"min_group_scans": 3})})
    before = _status(root, changed, export)
    assert before["split"].detail == "config changed", before["split"]
    run = pipeline_flow(export, changed, root, until="split").run_id
    _agree(before, root, run, "split")
    config = changed  # from here on: its split is the current one

    # The export moved: its files are new to the memo (status cannot key them before
    # they are hashed); the same content elsewhere is the same ingestion.
    moved = tmp_path / "export"
    shutil.copytree(cohort, moved)
    export = _export(moved)
    assert _status(root, config, export)["ingest"].detail.endswith("new or changed")
    run = pipeline_flow(export, config, root, until="ingest").run_id
    assert read_lineage(layout).iloc[-1]["cache_hit"]

    # A new file in the export.
    (moved / "masks" / "notes.txt").write_text("reviewed by dr-smith")
    before = _status(root, config, export)
    assert before["ingest"].detail == "export changed", before["ingest"]
    run = pipeline_flow(export, config, root, until="ingest").run_id
    _agree(before, root, run, "ingest")

    # A changed ground-truth mask: one scan's masks, ratio, group and inputs change.
    mask = sorted((moved / "masks").glob("*_infection.nii.gz"))[0]
    image = sitk.ReadImage(str(mask))
    empty = sitk.GetImageFromArray(np.zeros_like(sitk.GetArrayFromImage(image)))
    empty.CopyInformation(image)
    sitk.WriteImage(empty, str(mask))
    before = _status(root, config, export)
    assert before["segment"].detail == "after ingest"
    run = pipeline_flow(export, config, root, until="preprocess").run_id
    _agree(before, root, run, "preprocess")
    # ... and a rerun looks up the keys status gives now (the per-scan items' included,
    # through the segment and preprocess tables they make).
    before = _cached(_status(root, config, export), "preprocess")
    assert before["train"].state == "stale" and "changed" in before["train"].detail
    run = pipeline_flow(export, config, root, until="preprocess").run_id
    _agree(before, root, run, "preprocess")
