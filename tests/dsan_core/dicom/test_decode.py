from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from dsan_core.dicom import reasons
from dsan_core.dicom.decode import AIR_HU, decode_series, normalise_stored
from dsan_core.errors import DicomError, GeometryError
from tests.dsan_core.dicom.dicom_factory import write_series, write_slice

STORED = np.array([[0, 24], [1024, 2000]])


@pytest.mark.parametrize(
    ("signed", "slope", "intercept", "expected"),
    [
        (True, 1.0, -1024.0, [[-1024, -1000], [0, 976]]),
        (False, 1.0, -1024.0, [[-1024, -1000], [0, 976]]),
        (True, 2.5, -100.0, [[-100, -40], [2460, 4900]]),
        (False, 0.5, 0.0, [[0, 12], [512, 1000]]),
    ],
)
def test_hu_from_stored_values(tmp_path: Path, signed: bool, slope: float, intercept: float,
                               expected: list[list[float]]) -> None:
    path = write_slice(tmp_path / "a.dcm", pixels=STORED, signed=signed, slope=slope,
                       intercept=intercept)
    volume = decode_series([path], scan_id="S-test")
    assert volume.hu.dtype == np.float32
    assert volume.hu.shape == (1, 2, 2)
    np.testing.assert_array_equal(volume.hu[0], np.array(expected, dtype=np.float32))


def test_negative_signed_values(tmp_path: Path) -> None:
    path = write_slice(tmp_path / "a.dcm", pixels=np.array([[-1000, -2], [0, 40]]),
                       intercept=0.0)
    np.testing.assert_array_equal(decode_series([path], scan_id="S-t").hu[0],
                                  [[-1000, -2], [0, 40]])


@pytest.mark.parametrize(("signed", "padding", "stored_pad"), [
    (True, -2000, -2000), (False, 0, 0), (False, 63536, 63536)])
def test_padding_value_becomes_air(tmp_path: Path, signed: bool, padding: int,
                                   stored_pad: int) -> None:
    pixels = np.array([[stored_pad, 1024], [1100, stored_pad]])
    intercept = 0.0 if signed else -1024.0
    path = write_slice(tmp_path / "p.dcm", pixels=pixels, signed=signed, padding=padding,
                       intercept=intercept)
    hu = decode_series([path], scan_id="S-t").hu[0]
    assert hu[0, 0] == AIR_HU and hu[1, 1] == AIR_HU
    assert hu[0, 1] == 1024 + intercept and hu[1, 0] == 1100 + intercept


def test_signed_12_bit_without_sign_extension(tmp_path: Path) -> None:
    # -24 in 12 bits is 0xFE8; written without extending the sign into bits 12-15,
    # and with a stray overlay bit (bit 15) on the second pixel.
    raw = np.array([[0x0FE8, 0x8010]], dtype=np.uint16).view(np.int16)
    path = write_slice(tmp_path / "b.dcm", pixels=raw, bits_stored=12, intercept=0.0)
    np.testing.assert_array_equal(decode_series([path], scan_id="S-t").hu[0], [[-24, 16]])


@pytest.mark.parametrize(("bits", "signed", "values", "expected"), [
    (12, True, [0x0FFF, 0x0800, 0x07FF], [-1, -2048, 2047]),
    (12, False, [0xF123], [0x0123]),
    (16, True, [-5], [-5]),
])
def test_normalise_stored(bits: int, signed: bool, values: list[int], expected: list[int]) -> None:
    np.testing.assert_array_equal(normalise_stored(np.array(values), bits, signed), expected)


def test_volume_geometry_and_sitk(tmp_path: Path) -> None:
    paths = write_series(tmp_path, 4, spacing=1.25, pixel_spacing=(0.6, 0.7),
                         pixels=np.arange(6, dtype=np.int16).reshape(2, 3))
    volume = decode_series(paths, scan_id="S-t")
    assert volume.hu.shape == (4, 2, 3)
    assert volume.spacing == pytest.approx((0.7, 0.6, 1.25))  # x = column spacing
    assert volume.origin == (0.0, 0.0, 0.0)
    assert volume.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    image = volume.to_sitk()
    assert image.GetSize() == (3, 2, 4)
    assert image.GetSpacing() == pytest.approx((0.7, 0.6, 1.25))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), volume.hu)
    assert image.TransformIndexToPhysicalPoint((0, 0, 3)) == pytest.approx((0.0, 0.0, 3.75))


def test_descending_slices_flip_the_normal(tmp_path: Path) -> None:
    paths = list(reversed(write_series(tmp_path, 3, spacing=2.0)))
    volume = decode_series(paths, scan_id="S-t")
    assert volume.origin == (0.0, 0.0, 4.0)
    assert volume.direction[8] == -1.0
    assert volume.spacing[2] == pytest.approx(2.0)


def test_int16_output(tmp_path: Path) -> None:
    path = write_slice(tmp_path / "a.dcm", pixels=STORED)
    volume = decode_series([path], scan_id="S-t", dtype="int16")
    assert volume.hu.dtype == np.int16
    np.testing.assert_array_equal(volume.hu[0], [[-1024, -1000], [0, 976]])


def test_unsorted_and_mixed_inputs_raise(tmp_path: Path) -> None:
    paths = write_series(tmp_path, 3)
    with pytest.raises(GeometryError) as info:
        decode_series([paths[1], paths[0], paths[2]], scan_id="S-abc")
    assert info.value.reason == reasons.UNSORTED_SLICES
    assert "S-abc" in str(info.value)
    other = write_slice(tmp_path / "x.dcm", sop="77", position=(0, 0, 3),
                        pixels=np.zeros((4, 4), np.int16))
    with pytest.raises(GeometryError) as info:
        decode_series([*paths, other], scan_id="S-abc")
    assert info.value.reason == reasons.MIXED_MATRIX
    with pytest.raises(DicomError):
        decode_series([], scan_id="S-abc")
