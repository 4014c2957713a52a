"""Every file shipped in the pydicom wheel's test data: real DICOM oddities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.pixels import apply_modality_lut

from dsan_core.config import IngestConfig
from dsan_core.dicom import reasons
from dsan_core.dicom.decode import decode_series
from dsan_core.dicom.index import FileFailure, discover_files, index_headers
from dsan_core.dicom.series import choose_series
from dsan_core.errors import DicomError

# Odd files make pydicom warn (bad VRs, implicit inside explicit...); that is the point.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _local(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    assert isinstance(path, str)
    return Path(path)


Indexed = tuple[pd.DataFrame, list[FileFailure]]
TEST_FILES = sorted(Path(p) for p in get_testdata_files())
FOLDER = _local("CT_small.dcm").parent


@pytest.fixture(scope="module")
def indexed() -> tuple[pd.DataFrame, list[FileFailure]]:
    return index_headers([*TEST_FILES, *discover_files(FOLDER)])


def test_every_path_yields_a_record_or_a_reason(indexed: Indexed) -> None:
    frame, failures = indexed
    paths = [*TEST_FILES, *discover_files(FOLDER)]
    outcomes = [Path(p) for p in frame["path"]] + [f.path for f in failures]
    assert sorted(outcomes) == sorted(paths)
    assert len(frame) > 50  # CT, MR, RT dose, US, SC... in every transfer syntax
    for failure in failures:
        assert failure.reason in reasons.FILE_REASONS
        assert failure.message and str(FOLDER) not in failure.message


@pytest.mark.parametrize(("name", "reason"), [
    ("MR_truncated.dcm", reasons.TRUNCATED),
    ("rtplan.dcm", reasons.NON_IMAGE),
    ("dicomdirtests/DICOMDIR", reasons.NON_IMAGE),
    ("README.txt", reasons.NOT_DICOM),
    ("dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000000", reasons.NO_PIXEL_DATA),
    ("dicomdirtests", reasons.NOT_A_FILE),
])
def test_known_failures(indexed: tuple, name: str, reason: str) -> None:  # type: ignore[type-arg]
    _, failures = indexed
    by_path = {f.path: f.reason for f in failures}
    assert by_path[FOLDER / name] == reason


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm", "SC_rgb_jpeg.dcm",
                                  "ExplVR_BigEnd.dcm", "image_dfl.dcm", "liver_1frame.dcm"])
def test_known_records(indexed: Indexed, name: str) -> None:
    frame, _ = indexed
    assert (frame["path"] == FOLDER / name).any()


def test_choose_series_on_real_headers(indexed: Indexed) -> None:
    frame, _ = indexed
    plan = choose_series(frame, IngestConfig())
    assert set(plan.decisions["status"]) <= {reasons.CHOSEN, reasons.SKIPPED, reasons.REJECTED}
    assert plan.decisions["series_instance_uid"].nunique() == len(plan.decisions)
    assert set(plan.studies["study_instance_uid"]) == set(frame["study_instance_uid"])


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"])
def test_decode_matches_apply_modality_lut(name: str) -> None:
    path = _local(name)
    ds = pydicom.dcmread(path)
    expected = apply_modality_lut(ds.pixel_array, ds)
    volume = decode_series([path], scan_id="S-real")
    assert volume.hu.shape == (1, *expected.shape)
    np.testing.assert_allclose(volume.hu[0], expected, atol=1e-3)
    assert volume.spacing[:2] == pytest.approx(
        (float(ds.PixelSpacing[1]), float(ds.PixelSpacing[0])))
    assert volume.origin == pytest.approx(tuple(float(v) for v in ds.ImagePositionPatient))


def test_ct_small_hu_values() -> None:
    volume = decode_series([_local("CT_small.dcm")], scan_id="S-real")
    ds = pydicom.dcmread(_local("CT_small.dcm"))
    stored = ds.pixel_array.astype(np.float64)
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    assert volume.hu[0, 0, 0] == pytest.approx(stored[0, 0] * slope + intercept)


def test_decode_jpeg_ls_through_gdcm_fallback() -> None:
    # pydicom has no JPEG-LS plugin installed here; SimpleITK's GDCM decodes it.
    lossless = decode_series([_local("MR_small_jpeg_ls_lossless.dcm")], scan_id="S-real")
    reference = decode_series([_local("MR_small.dcm")], scan_id="S-real")
    np.testing.assert_array_equal(lossless.hu, reference.hu)


def test_decode_every_record_or_explain(indexed: Indexed) -> None:
    frame, _ = indexed
    outcomes: dict[str, int] = {}
    for path in frame["path"].drop_duplicates():
        try:
            volume = decode_series([path], scan_id="S-real")
        except DicomError as error:
            outcomes[error.reason] = outcomes.get(error.reason, 0) + 1
            continue
        assert volume.hu.ndim == 3 and volume.hu.dtype == np.float32
        outcomes["ok"] = outcomes.get("ok", 0) + 1
    assert outcomes["ok"] >= 40
    assert set(outcomes) <= {"ok", reasons.UNSUPPORTED_IMAGE, reasons.MISSING_GEOMETRY,
                             reasons.DECODE_FAILED, reasons.BAD_VALUE}
