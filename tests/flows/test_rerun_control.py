"""Rerun control on a finished data root: --refresh, --until and early cut-off."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsan_core.errors import StageError
from flows.pipeline import pipeline_flow
from storage.inputs import ExportLocation
from storage.layout import DataLayout
from storage.lineage import read_lineage

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


def _export(cohort: Path) -> ExportLocation:
    return ExportLocation(dicom_root=cohort / "dicom", labels=cohort / "labels.csv",
                          masks=cohort / "masks")


def _hits(root: Path, run_id: str) -> dict[str, bool]:
    rows = read_lineage(DataLayout(root))
    rows = rows[rows["run_id"] == run_id]
    return dict(zip(rows["stage"], rows["cache_hit"], strict=True))


def test_refresh_until_and_early_cut_off(pipeline_copy: Path, cohort: Path,
                                         test_config) -> None:  # type: ignore[no-untyped-def]
    root = pipeline_copy
    # --refresh split: recomputed, byte-identical, so nothing after it recomputes.
    refreshed = pipeline_flow(_export(cohort), test_config, root, refresh=("split",))
    hits = _hits(root, refreshed.run_id)
    assert not hits["split"] and not hits["audit-splits"]
    assert all(hits[s] for s in ("ingest", "segment", "preprocess", "train", "ensemble",
                                 "evaluate")), hits
    # A config change that changes no output: the split stage recomputes, nothing after it.
    quieter = test_config.model_copy(update={
        "split": test_config.split.model_copy(update={"min_group_scans": 3})})
    changed = pipeline_flow(_export(cohort), quieter, root)
    hits = _hits(root, changed.run_id)
    assert not hits["split"] and all(hits[s] for s in ("preprocess", "train", "evaluate"))
    # --until: nothing after the named stage runs.
    early = pipeline_flow(_export(cohort), test_config, root, until="split")
    assert early.preprocess is None and early.training is None
    # train-seg: the predict-time VB-Net, trained for method ground_truth too.
    assert set(_hits(root, early.run_id)) == {"ingest", "train-seg", "segment", "groups",
                                              "segment-figures", "segment-eval", "split",
                                              "audit-splits"}
    with pytest.raises(StageError, match="expected stages among"):
        pipeline_flow(_export(cohort), test_config, root, refresh=("nonsense",))
