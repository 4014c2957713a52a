"""Pre-processing through the real Prefect engine and real Dask: outputs on the target grid,
aligned and memory-mappable; per-scan content cache (rerun, added scans, a changed volume,
a deleted output); a bad scan does not sink the others; an external scheduler via the CLI."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from dsan_core.preprocessing import GridGeometry
from dsan_core.synthetic import make_phantom
from flows.preprocessing import preprocess_flow
from storage.hashing import sha256_file
from storage.layout import DataLayout
from storage.lineage import read_lineage
from storage.schemas import INFECTION, SCANS
from storage.tables import read_table, write_table
from storage.volumes import read_geometry, write_image

pytestmark = pytest.mark.usefixtures("prefect_harness")

SHAPE = (40, 64, 64)  # (z, y, x)
SPACING = (2.0, 2.0, 2.5)  # (x, y, z) mm
METHOD = "classical__test"


def _image(array: np.ndarray, origin: tuple[float, float, float]) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin(origin)
    return image


def _write_scan(layout: DataLayout, seed: int, *, hu_shift: int = 0,
                bad_mask: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """One phantom as HU NIfTI + masks; returns its `scans` and `infection` rows."""
    scan_id = f"scan-{seed:02d}"
    diagnosis = "COVID" if seed % 2 == 0 else "CAP"
    phantom = make_phantom(SHAPE, SPACING, np.random.default_rng(seed), diagnosis=diagnosis,
                           target_ratio=0.08, pattern="consolidation", noise_hu=5.0,
                           distractors=False)
    origin = (-64.0 + seed, -60.0, 100.0 + 2 * seed)
    hu = (phantom.hu + np.int16(hu_shift) * phantom.lung).astype(np.int16)
    write_image(_image(hu, origin), layout.volume(scan_id))
    mask_origin = (origin[0] + 5.0, *origin[1:]) if bad_mask else origin
    paths = {}
    for kind, mask in (("lung", phantom.lung), ("infection", phantom.infection)):
        paths[kind] = layout.mask(METHOD, scan_id, kind)
        write_image(_image(mask, mask_origin), paths[kind])
    volume = layout.volume(scan_id)
    scan = {
        "scan_id": scan_id, "patient_id": f"pat-{seed:02d}", "study_id": f"study-{seed:02d}",
        "series_id": f"series-{seed:02d}", "label": diagnosis, "site": "site-a",
        "acquisition_date": date(2020, 2, 1 + seed), "manufacturer": "SYNTH", "age_years": 50,
        "sex": "F", "n_slices": SHAPE[0], "shape_z": SHAPE[0], "shape_y": SHAPE[1],
        "shape_x": SHAPE[2], "spacing_x": SPACING[0], "spacing_y": SPACING[1],
        "spacing_z": SPACING[2], "slice_thickness_mm": SPACING[2], "spacing_spread": 0.0,
        "gantry_tilt_deg": 0.0, "geometry_flags": "", "volume_path": layout.relative(volume),
        "volume_hash": sha256_file(volume), "source_hash": f"src-{seed}", "label_split": "",
    }
    infection = {
        "scan_id": scan_id, "lung_ml": phantom.lung_ml, "infection_ml": phantom.infection_ml,
        "infection_ratio": phantom.infection_ratio, "method": "classical", "model_version": "-",
        "lung_path": layout.relative(paths["lung"]), "lung_hash": sha256_file(paths["lung"]),
        "infection_path": layout.relative(paths["infection"]),
        "infection_hash": sha256_file(paths["infection"]),
    }
    return scan, infection


def _write_tables(layout: DataLayout, rows: dict[str, tuple[dict, dict]]) -> None:
    write_table(layout, "scans", pd.DataFrame([r[0] for r in rows.values()], columns=SCANS.names))
    write_table(layout, "infection",
                pd.DataFrame([r[1] for r in rows.values()], columns=INFECTION.names))


def _physical_centroid(mask: np.ndarray, origin: Any, spacing: Any) -> np.ndarray:
    index_xyz = np.argwhere(mask > 0).mean(axis=0)[::-1]
    return np.asarray(origin) + np.asarray(spacing) * index_xyz


def _check_outputs(layout: DataLayout, table: pd.DataFrame, config: Any) -> None:
    target = tuple(config.preprocess.target_shape)
    for row in table.itertuples(index=False):
        assert not str(row.input_path).startswith("/")
        image = np.load(layout.resolve(row.input_path), mmap_mode="r")
        lung = np.load(layout.resolve(row.lung_path), mmap_mode="r")
        infection = np.load(layout.resolve(row.infection_path), mmap_mode="r")
        assert isinstance(image, np.memmap) and isinstance(lung, np.memmap)
        assert image.shape == lung.shape == infection.shape == target
        assert (row.shape_z, row.shape_y, row.shape_x) == target
        assert image.dtype == np.float32 and lung.dtype == infection.dtype == np.uint8
        assert set(np.unique(lung)) == {0, 1} and set(np.unique(infection)) == {0, 1}
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        assert float(np.abs(image[lung == 0]).max()) == 0.0  # input = CT x lung mask
        assert not np.any(infection & (1 - lung))
        # Image and masks agree: lung-like values (-850 HU ~ 0.33) inside the lung mask,
        # consolidation (~ -30 HU ~ 0.88) inside the infection mask.
        inside, healthy = infection.astype(bool), lung.astype(bool) & ~infection.astype(bool)
        assert float(np.median(image[healthy])) < 0.45
        assert image[inside].mean() > image[healthy].mean() + 0.2
        geometry = GridGeometry.from_dict(read_geometry(layout.resolve(row.geometry_path)))
        assert geometry.final_shape == target
        assert geometry.resampled_spacing == pytest.approx(config.preprocess.spacing_mm)
        assert geometry.scale_factor == pytest.approx(row.scale_factor)
        assert geometry.final_spacing == pytest.approx(
            tuple(s / row.scale_factor for s in config.preprocess.spacing_mm))
        assert all(n <= t for n, t in zip(geometry.scaled_size, geometry.final_size,
                                          strict=True))  # "fit": nothing cropped
        # Masks land where they were in millimetres (within one final voxel).
        for kind, final in (("lung", lung), ("infection", infection)):
            original = sitk.ReadImage(str(layout.mask(METHOD, row.scan_id, kind)))
            before = _physical_centroid(sitk.GetArrayFromImage(original), original.GetOrigin(),
                                        original.GetSpacing())
            after = _physical_centroid(np.asarray(final), geometry.final_origin,
                                       geometry.final_spacing)
            assert np.linalg.norm(after - before) < max(geometry.final_spacing), kind


def _cache_hits(layout: DataLayout) -> list[bool]:
    lineage = read_lineage(layout)
    return [bool(v) for v in lineage.loc[lineage["stage"] == "preprocess", "cache_hit"]]


def test_outputs_per_scan_cache_and_failures(tmp_path: Path, test_config: Any) -> None:
    layout = DataLayout(tmp_path / "data")
    rows = {f"scan-{i:02d}": _write_scan(layout, i) for i in range(4)}
    rows["scan-09"] = _write_scan(layout, 9, bad_mask=True)
    _write_tables(layout, rows)
    run = (test_config.preprocess, test_config.runtime, layout.root)

    first = preprocess_flow(*run)
    assert (first.processed, first.cached, first.failed) == (4, 0, 1)
    assert "preprocess_failures 1" in first.summary()[0]
    assert "origin" in first.failures["scan-09"]
    table = read_table(layout, "preprocessed")
    assert list(table["scan_id"]) == [f"scan-{i:02d}" for i in range(4)]
    _check_outputs(layout, table, test_config)
    assert first.stage.outputs["preprocessed"]["sha256"] == sha256_file(
        layout.table("preprocessed"))

    second = preprocess_flow(*run)
    assert (second.processed, second.cached, second.failed) == (4 - 4, 4, 1)
    assert _cache_hits(layout) == [False, True]

    rows.update({f"scan-{i:02d}": _write_scan(layout, i) for i in (4, 5)})
    _write_tables(layout, rows)
    third = preprocess_flow(*run)
    assert (third.processed, third.cached) == (2, 4)

    # A changed volume (new content, as a re-ingestion would write) reprocesses that scan only.
    rows["scan-01"] = _write_scan(layout, 1, hu_shift=40)
    _write_tables(layout, rows)
    before = read_table(layout, "preprocessed").set_index("scan_id")
    fourth = preprocess_flow(*run)
    assert (fourth.processed, fourth.cached) == (1, 5)
    after = read_table(layout, "preprocessed").set_index("scan_id")
    changed = after.index[after["input_hash"] != before.loc[after.index, "input_hash"]]
    assert list(changed) == ["scan-01"]

    # A deleted output is noticed (the cache verifies before trusting) and rewritten.
    victim = layout.resolve(after.loc["scan-02", "lung_path"])
    victim.unlink()
    fifth = preprocess_flow(*run)
    assert (fifth.processed, fifth.cached) == (1, 5)
    assert sha256_file(victim) == after.loc["scan-02", "lung_hash"]
    assert _cache_hits(layout) == [False, True, False, False, True]


def test_external_scheduler_through_the_cli(tmp_path: Path, test_config: Any) -> None:
    from distributed import LocalCluster
    from typer.testing import CliRunner

    from flows.cli import app

    layout = DataLayout(tmp_path / "data")
    _write_tables(layout, {f"scan-{i:02d}": _write_scan(layout, i) for i in range(3)})
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        result = CliRunner().invoke(app, ["preprocess", "--profile", "test", "--data-root",
                                          str(layout.root), "--dask-address",
                                          cluster.scheduler_address])
        assert result.exit_code == 0, result.output
        assert "scans pre-processed 3, from cache 0, preprocess_failures 0" in result.output
        # The 3 scans ran on this scheduler (their Dask keys start with the stage's words).
        done = {name: prefix.state_counts["memory"]
                for name, prefix in cluster.scheduler.task_prefixes.items()}
        assert sum(done.values()) == 3, done

        dask = test_config.runtime.dask.model_copy(update={"address": cluster.scheduler_address})
        runtime = test_config.runtime.model_copy(update={"dask": dask})
        again = preprocess_flow(test_config.preprocess, runtime, layout.root)
    assert (again.processed, again.cached) == (0, 3)
    _check_outputs(layout, read_table(layout, "preprocessed"), test_config)
