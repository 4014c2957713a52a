"""Segmentation through the real Prefect engine on the test-profile cohort."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from flows.segmentation import segmentation_flow, train_segmenter_flow
from storage.layout import DataLayout
from storage.lineage import read_lineage
from storage.tables import read_table

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _vbnet(test_config):  # type: ignore[no-untyped-def]
    """The test profile's segmentation settings with the VB-Net as the method."""
    return test_config.segmentation.model_copy(update={"method": "vbnet"})


@pytest.mark.slow
def test_train_segment_group_rerun(ingested_copy: Path, test_config,  # type: ignore[no-untyped-def]
                                   caplog: pytest.LogCaptureFixture) -> None:
    root = ingested_copy
    layout = DataLayout(root)
    first = segmentation_flow(_vbnet(test_config), test_config.groups, test_config.runtime,
                              root)
    scans = read_table(layout, "scans")
    infection = read_table(layout, "infection")
    groups = read_table(layout, "groups")
    assert len(infection) == len(scans) == len(groups) == first.masks.segmented
    assert infection["infection_ratio"].between(0, 1).all()
    assert (infection["infection_ml"] <= infection["lung_ml"]).all()
    # Masks lie on the scan's grid (they open over the CT in 3D Slicer).
    row = infection.iloc[0]
    volume = sitk.ReadImage(str(layout.resolve(scans.set_index("scan_id").loc[row.scan_id,
                                                                              "volume_path"])))
    mask = sitk.ReadImage(str(layout.resolve(row.lung_path)))
    assert mask.GetSize() == volume.GetSize()
    assert np.allclose(mask.GetOrigin(), volume.GetOrigin())
    assert np.allclose(mask.GetSpacing(), volume.GetSpacing())
    assert set(np.unique(sitk.GetArrayFromImage(mask))) <= {0, 1}
    # The checkpoint loads with weights_only=True.
    assert first.model is not None
    model = first.model.stage
    state = torch.load(model.output_path(layout, "model"), weights_only=True)
    assert "best_model" in state
    assert (layout.figure("segmentation", "infection_ratio_histogram.png")).stat().st_size > 0
    assert len(read_table(layout, "seg_eval")) >= 2
    card = first.evaluation.predict_segmenter  # predict segments with the same VB-Net
    assert card["tag"] == f"vbnet__{first.model.model_version}" and not card["weaker"]
    report = layout.report("segmentation", "evaluation.md").read_text()
    assert "VB-Net infection threshold (probability): 0.50." in report
    # Training shows its progress, one line per epoch.
    assert "training VB-Net" in caplog.text and "2/2 epochs" in caplog.text

    second = segmentation_flow(_vbnet(test_config), test_config.groups,
                               test_config.runtime, root)
    assert second.model is not None
    assert second.masks.segmented == 0 and second.model.cache_hit
    lineage = read_lineage(layout)
    assert lineage.loc[lineage["stage"] == "train-seg", "cache_hit"].tolist() == [False, True]
    threshold = torch.load(model.output_path(layout, "model"),
                           weights_only=True)["infection_threshold"]
    assert 0 < threshold < 1

    # A fixed inference threshold re-segments every scan but never retrains.
    fixed = _vbnet(test_config).model_copy(update={
        "vbnet": test_config.segmentation.vbnet.model_copy(update={"infection_threshold": 0.95})})
    third = segmentation_flow(fixed, test_config.groups, test_config.runtime, root)
    assert third.model is not None and third.model.cache_hit
    assert third.masks.segmented == len(scans)
    strict = read_table(layout, "infection").set_index("scan_id")["infection_ml"]
    loose = infection.set_index("scan_id")["infection_ml"]
    assert (strict <= loose + 1e-9).all()  # from the default 0.5 up to 0.95: masks shrink
    assert (infection["infection_threshold"] == 0.5).all()
    assert (read_table(layout, "infection")["infection_threshold"] == 0.95).all()
    assert third.masks.infection_threshold == 0.95


@pytest.mark.slow
def test_training_resumes_after_a_kill(ingested_copy: Path, test_config) -> None:  # type: ignore[no-untyped-def]
    root = ingested_copy
    layout = DataLayout(root)
    done = train_segmenter_flow(_vbnet(test_config), test_config.runtime, root)
    model_dir = done.stage.output_path(layout, "model").parent
    # Simulate a kill after the last epoch but before the final model was written.
    (model_dir / "best.pt").unlink()
    shutil.rmtree(layout.cache_dir("train-seg"))
    resumed = train_segmenter_flow(_vbnet(test_config), test_config.runtime, root)
    assert not resumed.cache_hit
    history = (model_dir / "history.json").read_text()
    assert history.count('"epoch"') == test_config.segmentation.vbnet.epochs


def test_classical_and_external_methods(ingested_copy: Path, test_config,  # type: ignore[no-untyped-def]
                                        tmp_path: Path) -> None:
    root = ingested_copy
    layout = DataLayout(root)
    classical = test_config.segmentation.model_copy(update={"method": "classical"})
    result = segmentation_flow(classical, test_config.groups, test_config.runtime, root)
    assert result.masks.method_tag.startswith("classical__")
    # The scans have ground truth, so a VB-Net is trained (for dsan masks export); the
    # classical method's predictions keep the classical segmenter its classifier saw.
    assert result.model is not None
    card = result.evaluation.predict_segmenter
    assert card["tag"] == result.masks.method_tag and not card["weaker"]
    assert read_table(layout, "infection")["infection_threshold"].isna().all()

    # External masks: the ground truth re-exported under scan ids, one with a wrong grid.
    truth = read_table(layout, "ground_truth")
    external = tmp_path / "external"
    external.mkdir()
    for row in truth.itertuples(index=False):
        for kind in ("lung", "infection"):
            shutil.copyfile(layout.resolve(getattr(row, f"{kind}_path")),
                            external / f"{row.scan_id}_{kind}.nii.gz")
    config = test_config.segmentation.model_copy(
        update={"method": "external", "external_mask_dir": external})
    imported = segmentation_flow(config, test_config.groups, test_config.runtime, root)
    assert imported.masks.failed == 0
    assert imported.evaluation.summary["external"].lung_dice == 1.0
    # Studies without external masks are segmented by the VB-Net at predict time.
    assert imported.evaluation.predict_segmenter["method"] == "vbnet"
    assert imported.evaluation.predict_segmenter["weaker"]
    assert set(imported.evaluation.summary) == {"classical", "external", "vbnet"}

    victim = external / f"{truth.iloc[0].scan_id}_lung.nii.gz"
    wrong = sitk.ReadImage(str(victim))[:, :, 1:]  # one slice short
    sitk.WriteImage(wrong, str(victim))
    refused = segmentation_flow(config, test_config.groups, test_config.runtime, root)
    assert refused.masks.failed == 1
    assert "expected size" in refused.masks.failures[0]
    assert truth.iloc[0].scan_id in refused.masks.failures[0]
    assert truth.iloc[0].scan_id not in set(read_table(layout, "infection")["scan_id"])

    # A scan with no external masks at all fails alone; the others are still imported.
    missing = truth.iloc[1].scan_id
    for kind in ("lung", "infection"):
        (external / f"{missing}_{kind}.nii.gz").unlink()
    partial = segmentation_flow(config, test_config.groups, test_config.runtime, root)
    assert partial.masks.failed == 2
    assert any("no external masks" in f and missing in f for f in partial.masks.failures)
    assert len(read_table(layout, "infection")) == len(truth) - 2


def test_asking_for_cuda_without_one_is_a_clear_error(test_config,  # type: ignore[no-untyped-def]
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from dsan_core.errors import StageError
    from flows.segmentation import pick_device

    runtime = test_config.runtime.model_copy(update={"device": "cuda"})
    if torch.cuda.is_available():
        assert pick_device(runtime) == "cuda"
        # The error path below runs on GPU machines too: as if the GPU were absent.
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(StageError, match="sees no CUDA device"):
        pick_device(runtime)
    assert pick_device(test_config.runtime.model_copy(update={"device": "auto"})) == "cpu"
