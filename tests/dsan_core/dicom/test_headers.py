from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dsan_core.dicom import reasons
from dsan_core.dicom.headers import read_header
from dsan_core.dicom.index import RECORD_COLUMNS, discover_files, index_headers
from dsan_core.errors import DicomError
from tests.dsan_core.dicom.dicom_factory import write_slice


def test_read_header_fields(tmp_path: Path) -> None:
    path = write_slice(tmp_path / "a.dcm", position=(1.0, 2.0, 3.5), thickness=1.25,
                       pixel_spacing=(0.6, 0.7), padding=-2000, slope=1.0, intercept=-1024.0,
                       series_number=4, description="Lung 1.25")
    record = read_header(path)
    assert record.modality == "CT"
    assert record.image_type == "ORIGINAL\\PRIMARY\\AXIAL"
    assert record.image_position == (1.0, 2.0, 3.5)
    assert record.image_orientation == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert record.pixel_spacing == (0.6, 0.7)
    assert record.slice_thickness == 1.25
    assert (record.rows, record.columns, record.number_of_frames) == (8, 8, 1)
    assert record.rescale_intercept == -1024.0
    assert record.padding_value == -2000
    assert record.series_number == 4
    assert record.patient_id == "PAT-001"
    assert record.file_size == path.stat().st_size
    assert record.transfer_syntax == "1.2.840.10008.1.2.1"


def _truncate(path: Path, n_bytes: int) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - n_bytes])
    return path


@pytest.mark.parametrize("cut", [1, 64, 127])
def test_truncated_pixel_data_is_caught(tmp_path: Path, cut: int) -> None:
    path = _truncate(write_slice(tmp_path / "t.dcm"), cut)
    with pytest.raises(DicomError) as info:
        read_header(path)
    assert info.value.reason == reasons.TRUNCATED


def test_short_pixel_element_is_truncated(tmp_path: Path) -> None:
    # The declared length fits in the file but is smaller than rows x columns x 2.
    path = write_slice(tmp_path / "s.dcm", pixels=np.zeros((8, 8), np.int16),
                       extra={"Rows": 16})
    with pytest.raises(DicomError) as info:
        read_header(path)
    assert info.value.reason == reasons.TRUNCATED
    assert "256" in str(info.value)  # 16 x 8 x 2 bytes expected


@pytest.mark.parametrize(
    ("keyword", "reason", "named"),
    [("PixelData", reasons.NO_PIXEL_DATA, None),
     ("SeriesInstanceUID", reasons.MISSING_TAG, "SeriesInstanceUID")],
)
def test_a_removed_element_is_refused_with_its_reason(
        tmp_path: Path, keyword: str, reason: str, named: str | None) -> None:
    path = write_slice(tmp_path / "x.dcm")
    import pydicom

    ds = pydicom.dcmread(path)
    delattr(ds, keyword)
    ds.save_as(path)
    with pytest.raises(DicomError) as info:
        read_header(path)
    assert info.value.reason == reason
    if named is not None:
        assert named in str(info.value)


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"hello, not a dicom file\n", reasons.NOT_DICOM), (b"", reasons.NOT_DICOM)],
)
def test_not_dicom(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(DicomError) as info:
        read_header(path, scan="S-0001")
    assert info.value.reason == reason
    assert info.value.scan == "S-0001"
    assert str(tmp_path) not in str(info.value)


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(DicomError) as info:
        read_header(tmp_path)
    assert info.value.reason == reasons.NOT_A_FILE


def test_index_headers_one_outcome_per_path(tmp_path: Path) -> None:
    good = [write_slice(tmp_path / "d" / f"{i}.dcm", sop=str(i), position=(0, 0, i))
            for i in range(3)]
    bad = tmp_path / "d" / "sub" / "junk"
    bad.parent.mkdir()
    bad.write_text("junk")
    truncated = _truncate(write_slice(tmp_path / "d" / "sub" / "cut.dcm", sop="9"), 10)
    paths = discover_files(tmp_path / "d")
    assert len(paths) == 5
    frame, failures = index_headers(paths)
    assert list(frame.columns) == list(RECORD_COLUMNS)
    assert len(frame) == 3
    assert sorted(frame["ipp_z"]) == [0.0, 1.0, 2.0]
    assert {Path(p) for p in frame["path"]} == set(good)
    assert {(f.path, f.reason) for f in failures} == {
        (bad, reasons.NOT_DICOM), (truncated, reasons.TRUNCATED)}
    for failure in failures:
        assert str(tmp_path) not in failure.message


def test_index_headers_empty() -> None:
    frame, failures = index_headers([])
    assert frame.empty and failures == []
    assert list(frame.columns) == list(RECORD_COLUMNS)


def test_an_unexpected_parser_crash_becomes_a_failure_without_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dsan_core.dicom import index as index_module

    target = tmp_path / "MUELLER^ANNA" / "IM0001"
    target.parent.mkdir()
    target.write_bytes(b"x" * 200)

    def explode(path: Path, **_: object) -> None:
        raise RuntimeError(f"boom in {path}")

    monkeypatch.setattr(index_module, "read_header", explode)
    frame, failures = index_module.index_headers([target])
    assert frame.empty and len(failures) == 1
    assert failures[0].reason == "unreadable"
    assert "MUELLER" not in failures[0].message and "RuntimeError" in failures[0].message
