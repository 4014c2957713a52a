"""The human-in-the-loop mask loop through the CLI and the real Prefect engine, on the
ingested test cohort with ground truth for only some scans: export the least sure
scans, correct one, import, and only what the correction changed recomputes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from dsan_core.segmentation.slicer import read_seg_nrrd, seg_nrrd_bytes
from flows.cli import app
from flows.segmentation import segmentation_flow
from storage.layout import DataLayout
from storage.lineage import read_lineage
from storage.tables import read_table, write_table
from tasks._common.contract import StageRun
from tasks.status import pipeline_status

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

KEEP = 12  # scans that keep the ground truth they were ingested with


def _states(root: Path, config) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with StageRun.open(root) as run:
        return {s.stage: s.state for s in pipeline_status(run, config)}


def _segment(root: Path, config):  # type: ignore[no-untyped-def]
    return segmentation_flow(config.segmentation, config.groups, config.runtime, root)


def _edit_block(path: Path, scan_id: str) -> None:
    """A reviewer corrects a 2x3x3 block in the middle of the scan: infection there
    becomes lung, everything else infection (every voxel of the block changes)."""
    labels, geometry = read_seg_nrrd(path.read_bytes(), scan_id=scan_id)
    z, y, x = (n // 2 for n in labels.shape)
    block = labels[z:z + 2, y:y + 3, x:x + 3]
    block[...] = np.where(block == 2, 1, 2)
    path.write_bytes(seg_nrrd_bytes(labels, geometry))


def test_export_correct_import_recomputes_only_the_corrected_scan(
        ingested_copy: Path, test_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, layout, runner = ingested_copy, DataLayout(ingested_copy), CliRunner()
    truth = read_table(layout, "ground_truth").sort_values("scan_id", ignore_index=True)
    write_table(layout, "ground_truth", truth.head(KEEP))  # the rest came without masks
    first = _segment(root, test_config)
    assert first.model is not None  # method ground_truth, and still a VB-Net for predict
    assert first.evaluation.predict_segmenter["tag"] == f"vbnet__{first.model.model_version}"
    assert "vbnet" in first.evaluation.summary  # its held-out numbers, printed by dsan run
    common = ["--profile", "test", "--data-root", str(root)]

    # Export: the 3 scans without masks the VB-Net is least sure of, for reviewers.
    folder = tmp_path / "review"
    exported = runner.invoke(app, ["masks", "export", "--n", "3", "--out", str(folder),
                                   *common])
    assert exported.exit_code == 0, exported.output
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["strategy"] == "uncertainty" and len(manifest["scans"]) == 3
    picked = [s["scan_id"] for s in manifest["scans"]]
    without = set(truth["scan_id"][KEEP:])
    assert set(picked) <= without
    scores = {m.data["_item"]: m.data["score"] for m in
              StageRun.open(root).cache.stored("review-score")}
    assert set(scores) == without  # every candidate scored, the top 3 picked
    assert picked == sorted(scores, key=lambda s: -scores[s])[:3]
    ct = sitk.ReadImage(str(layout.volume(picked[0])))
    seg = sitk.ReadImage(str(folder / picked[0] / "segmentation.seg.nrrd"))
    assert seg.GetSize() == ct.GetSize() and np.allclose(seg.GetOrigin(), ct.GetOrigin())
    assert np.allclose(seg.GetSpacing(), ct.GetSpacing())
    text = (folder / "manifest.csv").read_text() + json.dumps(manifest)
    assert "P-" not in text and str(tmp_path) not in text  # pseudonymous scan ids only
    status = runner.invoke(app, ["masks", "status", "--data-root", str(root)])
    assert "reviewed 0" in status.output and "proposed (awaiting review) 3" in status.output

    # Refused, naming the scan, and nothing imported: a mask on another grid, bad values.
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    victim = bad / picked[0] / "segmentation.seg.nrrd"
    labels, geometry = read_seg_nrrd(victim.read_bytes(), scan_id=picked[0])
    victim.write_bytes(seg_nrrd_bytes(labels, geometry.__class__(
        geometry.size, (2.0, 2.0, 2.0), geometry.origin, geometry.direction)))
    refused = runner.invoke(app, ["masks", "import", str(bad), "--reviewer", "dr-a", *common])
    assert refused.exit_code == 2
    assert (f"scan {picked[0]}: segmentation mask: expected spacing"
            in " ".join(refused.output.split()))
    shutil.rmtree(bad)
    shutil.copytree(folder, bad)
    labels_map = sitk.GetImageFromArray(np.full(labels.shape, 3, dtype=np.uint8))
    labels_map.CopyInformation(ct)
    sitk.WriteImage(labels_map, str(bad / picked[0] / "labels.nii.gz"))
    refused = runner.invoke(app, ["masks", "import", str(bad), "--reviewer", "dr-a", *common])
    assert refused.exit_code == 2
    assert (f"scan {picked[0]}: label map: expected values 0 (background), 1 (lung), "
            "2 (infection), found [3.0]") in " ".join(refused.output.split())
    assert not layout.table("mask_reviews").exists()

    # Import: one proposal corrected, two accepted as they are.
    _edit_block(folder / picked[0] / "segmentation.seg.nrrd", picked[0])
    imported = runner.invoke(app, ["masks", "import", str(folder), "--reviewer", "dr-a",
                                   *common])
    assert imported.exit_code == 0, imported.output
    reviews = read_table(layout, "mask_reviews").set_index("scan_id")
    assert sorted(reviews.index) == sorted(picked) and set(reviews["reviewer"]) == {"dr-a"}
    assert reviews.loc[picked[0], "voxels_changed"] > 0
    assert reviews.loc[picked[0], "infection_dice"] < 1.0
    assert (reviews.loc[picked[1:], "voxels_changed"] == 0).all()
    assert "mask-import" in set(read_lineage(layout)["stage"])
    states = _states(root, test_config)
    assert states["train-seg"] == "stale" and states["segment"] == "stale"

    # The next run retrains the VB-Net and segments the three reviewed scans only.
    second = _segment(root, test_config)
    assert second.model is not None and not second.model.cache_hit
    assert second.masks.segmented == 3 and second.masks.failed == len(without) - 3
    states = _states(root, test_config)  # status agrees with the run
    assert states["train-seg"] == "cached" and states["segment"] == "cached"
    infection = read_table(layout, "infection").set_index("scan_id")

    # A second correction of one scan: only that scan's masks and ratio change.
    _edit_block(folder / picked[1] / "segmentation.seg.nrrd", picked[1])
    again = runner.invoke(app, ["masks", "import", str(folder), "--reviewer", "dr-b", *common])
    assert again.exit_code == 0, again.output
    assert "unchanged since their last import (skipped): 2" in again.output
    third = _segment(root, test_config)
    assert third.masks.segmented == 1
    after = read_table(layout, "infection").set_index("scan_id")
    changed = [s for s in after.index if after.loc[s, "infection_hash"]
               != infection.loc[s, "infection_hash"]]
    assert changed == [picked[1]]
    status = runner.invoke(app, ["masks", "status", "--data-root", str(root)])
    assert "reviewed 3" in status.output and "dr-a 2, dr-b 1" in status.output
