from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dsan_core.config import IngestConfig
from dsan_core.dicom import reasons
from dsan_core.dicom.geometry import check_geometry
from dsan_core.dicom.index import index_headers
from tests.dsan_core.dicom.dicom_factory import write_series, write_slice

CONFIG = IngestConfig(min_slices=4)


def _records(paths: list[Path]) -> pd.DataFrame:
    frame, failures = index_headers(paths)
    assert failures == []
    return frame


def test_regular_stack_sorted_from_shuffled_input(tmp_path: Path) -> None:
    records = _records(write_series(tmp_path, 6, spacing=1.25))
    shuffled = records.sample(frac=1.0, random_state=3)
    report = check_geometry(shuffled, CONFIG)
    assert report.ok and report.reason is None
    assert list(records.loc[report.sorted_index, "ipp_z"]) == [0.0, 1.25, 2.5, 3.75, 5.0, 6.25]
    assert report.spacing_mm == pytest.approx(1.25)
    assert report.spacing_spread == pytest.approx(0.0, abs=1e-9)
    assert report.tilt_deg == pytest.approx(0.0, abs=1e-6)
    assert report.matrix == (8, 8)
    assert report.normal == pytest.approx((0.0, 0.0, 1.0))


def test_missing_slice(tmp_path: Path) -> None:
    report = check_geometry(_records(write_series(tmp_path, 8, skip=[4])), CONFIG)
    assert not report.ok
    assert report.reason == reasons.MISSING_SLICE
    assert "1 missing" in report.message


def test_duplicate_position(tmp_path: Path) -> None:
    report = check_geometry(_records(write_series(tmp_path, 6, repeat=[2])), CONFIG)
    assert report.reason == reasons.DUPLICATE_SLICE


def test_same_instance_twice_is_only_flagged(tmp_path: Path) -> None:
    paths = write_series(tmp_path, 5)
    copy = tmp_path / "copy.dcm"
    copy.write_bytes(paths[0].read_bytes())
    report = check_geometry(_records([*paths, copy]), CONFIG)
    assert report.ok
    assert report.flags == [reasons.DUPLICATE_FILE]
    assert report.n_slices == 5


def test_nonuniform_spacing(tmp_path: Path) -> None:
    # steps 1, 1, 1.2, 0.8, 1: spread (1.2 - 0.8) / 1 = 0.4 > 0.05, no gap > 1.5 x median
    records = _records(write_series(tmp_path, 6, z_override={3: 3.2}))
    report = check_geometry(records, CONFIG)
    assert report.reason == reasons.NONUNIFORM_SPACING
    assert report.spacing_spread == pytest.approx(0.4)


def test_small_jitter_within_tolerance(tmp_path: Path) -> None:
    records = _records(write_series(tmp_path, 6, z_override={3: 3.01}))
    report = check_geometry(records, CONFIG)
    assert report.ok
    assert report.spacing_spread == pytest.approx(0.02)


def test_gantry_tilt_15_deg_from_sheared_positions(tmp_path: Path) -> None:
    records = _records(write_series(tmp_path, 6, tilt_deg=15.0))
    report = check_geometry(records, CONFIG)
    assert report.reason == reasons.GANTRY_TILT
    assert report.tilt_deg == pytest.approx(15.0, abs=1e-6)
    allowed = check_geometry(records, IngestConfig(min_slices=4, reject_gantry_tilt=False))
    assert allowed.ok and allowed.flags == [reasons.GANTRY_TILT]


def test_gantry_tilt_15_deg_from_tilted_orientation(tmp_path: Path) -> None:
    # Tilted image planes, slices stacked straight along z.
    t = math.radians(15.0)
    orientation = (1.0, 0.0, 0.0, 0.0, math.cos(t), math.sin(t))
    records = _records(write_series(tmp_path, 6, orientation=orientation))
    report = check_geometry(records, CONFIG)
    assert report.reason == reasons.GANTRY_TILT
    assert report.tilt_deg == pytest.approx(15.0, abs=1e-6)


def test_mixed_matrix(tmp_path: Path) -> None:
    paths = write_series(tmp_path, 4)
    paths.append(write_slice(tmp_path / "big.dcm", sop="99", position=(0, 0, 4.0),
                             pixels=np.zeros((10, 8), np.int16)))
    report = check_geometry(_records(paths), CONFIG)
    assert report.reason == reasons.MIXED_MATRIX


def test_missing_position(tmp_path: Path) -> None:
    records = _records(write_series(tmp_path, 4))
    records.loc[records.index[1], "ipp_z"] = np.nan
    assert check_geometry(records, CONFIG).reason == reasons.MISSING_GEOMETRY


def test_single_slice(tmp_path: Path) -> None:
    report = check_geometry(_records(write_series(tmp_path, 1)), CONFIG)
    assert report.reason == reasons.TOO_FEW_SLICES
