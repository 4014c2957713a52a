"""The 3D Slicer segmentation file: what we write opens in SimpleITK, pynrrd and slicerio
with the CT's geometry and segments; what Slicer writes back (cropped, layered) reads."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from dsan_core.errors import MaskError
from dsan_core.grid import ScanGeometry
from dsan_core.segmentation.slicer import (
    label_map,
    masks_of,
    place_on_grid,
    read_seg_nrrd,
    seg_nrrd_bytes,
)


def _ct() -> sitk.Image:
    image = sitk.GetImageFromArray(np.zeros((6, 7, 8), dtype=np.int16))  # (z, y, x)
    image.SetSpacing((0.7, 0.8, 1.5))
    image.SetOrigin((-10.0, 20.0, 30.5))
    # An oblique-free but flipped axis, as some exports are.
    image.SetDirection((1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    return image


def _labels() -> np.ndarray:
    labels = np.zeros((6, 7, 8), dtype=np.uint8)
    labels[1:5, 2:6, 1:7] = 1
    labels[2:4, 3:5, 2:4] = 2
    return labels


def test_written_segmentation_opens_with_the_cts_geometry(tmp_path: Path) -> None:
    ct = _ct()
    path = tmp_path / "segmentation.seg.nrrd"
    path.write_bytes(seg_nrrd_bytes(_labels(), ScanGeometry.from_image(ct)))

    read = sitk.ReadImage(str(path))
    assert read.GetSize() == ct.GetSize()
    assert np.allclose(read.GetSpacing(), ct.GetSpacing())
    assert np.allclose(read.GetOrigin(), ct.GetOrigin())
    assert np.allclose(read.GetDirection(), ct.GetDirection())
    assert np.array_equal(sitk.GetArrayFromImage(read), _labels())

    nrrd = pytest.importorskip("nrrd")
    data, header = nrrd.read(str(path))
    assert data.shape == (8, 7, 6)  # pynrrd: x fastest, as (x, y, z)
    assert np.array_equal(data.transpose(2, 1, 0), _labels())
    assert header["Segment0_Name"] == "lung" and header["Segment1_LabelValue"] == "2"
    assert header["space"] == "left-posterior-superior"

    slicerio = pytest.importorskip("slicerio")
    segmentation = slicerio.read_segmentation(str(path))
    names = {s["name"]: s["labelValue"] for s in segmentation["segments"]}
    assert names == {"lung": 1, "infection": 2}

    labels, geometry = read_seg_nrrd(path.read_bytes(), scan_id="X-1")
    assert np.array_equal(labels, _labels())
    assert geometry == ScanGeometry.from_image(ct) or np.allclose(
        geometry.origin, ct.GetOrigin())


def test_a_cropped_save_is_placed_back_on_the_cts_grid() -> None:
    ct = _ct()
    geometry = ScanGeometry.from_image(ct)
    crop = _labels()[1:5, 2:6, 1:7]
    origin = ct.TransformIndexToPhysicalPoint((1, 2, 1))  # (x, y, z) index of the crop
    cropped = ScanGeometry((6, 4, 4), geometry.spacing, tuple(origin), geometry.direction)
    labels, read_geometry = read_seg_nrrd(seg_nrrd_bytes(crop, cropped), scan_id="X-1")
    placed = place_on_grid(labels, read_geometry, geometry, scan_id="X-1", kind="segmentation")
    assert np.array_equal(placed, _labels())

    shifted = ScanGeometry((6, 4, 4), geometry.spacing,
                           (origin[0] + 0.3, origin[1], origin[2]), geometry.direction)
    with pytest.raises(MaskError, match="scan X-1: segmentation mask: expected the CT's grid or a "
                                        "crop of it, found an origin"):
        place_on_grid(crop, shifted, geometry, scan_id="X-1", kind="segmentation")
    other = ScanGeometry((8, 7, 6), (1.0, 1.0, 1.0), geometry.origin, geometry.direction)
    with pytest.raises(MaskError, match="expected spacing"):
        place_on_grid(_labels(), other, geometry, scan_id="X-1", kind="segmentation")


def _header(lines: list[str]) -> bytes:
    return ("NRRD0004\n" + "\n".join(lines) + "\n\n").encode()


def test_layered_segments_and_refusals() -> None:
    # Overlapping segments: two layers (the list axis first in the file), label 1 each.
    lung = (_labels() >= 1).astype(np.uint8)
    infection = (_labels() == 2).astype(np.uint8)
    voxels = np.stack([lung, infection], axis=-1)  # (z, y, x, layer)
    head = ["type: unsigned char", "dimension: 4", "space: right-anterior-superior",
            "sizes: 2 8 7 6", "space directions: none (-0.7,0,0) (0,0.8,0) (0,0,1.5)",
            "kinds: list domain domain domain", "encoding: gzip",
            "space origin: (10,-20,30.5)", "Segment0_Name:=Lung", "Segment0_LabelValue:=1",
            "Segment0_Layer:=0", "Segment1_Name:=infection", "Segment1_LabelValue:=1",
            "Segment1_Layer:=1"]
    labels, geometry = read_seg_nrrd(_header(head) + gzip.compress(voxels.tobytes()),
                                     scan_id="X-2")
    assert np.array_equal(labels, _labels())
    assert np.allclose(geometry.origin, (-10, 20, 30.5))  # RAS -> LPS
    assert np.allclose(geometry.direction, _ct().GetDirection())

    renamed = [h.replace("infection", "lesion") for h in head]
    with pytest.raises(MaskError, match=r"scan X-2: segmentation: expected segments "
                                        r"\['infection', 'lung'\], found \['lesion', 'lung'\]"):
        read_seg_nrrd(_header(renamed) + gzip.compress(voxels.tobytes()), scan_id="X-2")
    plain = ["type: unsigned char", "dimension: 3", "sizes: 8 7 6", "encoding: raw",
             "space directions: (0.7,0,0) (0,0.8,0) (0,0,1.5)", "space origin: (0,0,0)"]
    bad = _labels().copy()
    bad[0, 0, 0] = 3
    with pytest.raises(MaskError, match=r"scan X-3: label map: expected values 0 \(background\)"
                                        r", 1 \(lung\), 2 \(infection\), found \[0, 1, 2, 3\]"):
        read_seg_nrrd(_header(plain) + bad.tobytes(), scan_id="X-3")


def test_label_map_round_trip() -> None:
    lung, infection = masks_of(_labels())
    assert np.array_equal(label_map(lung, infection), _labels())
    assert (infection <= lung).all()
