from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from dsan_core.errors import MaskError
from dsan_core.segmentation.external import (
    ScanGeometry,
    binary_mask,
    external_masks,
    split_label_map,
    validate_external_mask,
)

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
SCAN = ScanGeometry((64, 64, 40), (0.7, 0.7, 1.25), (-180.0, -200.0, 50.0), IDENTITY)


def _check(**changes: object) -> None:
    values = {"mask_size": SCAN.size, "mask_spacing": SCAN.spacing,
              "mask_origin": SCAN.origin, "mask_direction": SCAN.direction}
    values.update({f"mask_{k}": v for k, v in changes.items()})
    validate_external_mask(**values, scan=SCAN, scan_id="s-7", kind="lung")  # type: ignore[arg-type]


def _refused(**changes: object) -> str | None:
    """The MaskError message for these changes, or None when the mask is accepted."""
    try:
        _check(**changes)
    except MaskError as error:
        return str(error)
    return None


def test_matching_geometry_passes_within_tolerance() -> None:
    assert _refused() is None
    assert _refused(spacing=(0.70001, 0.7, 1.25), origin=(-180.001, -200.0, 50.0)) is None
    # The tolerances' edges: origin 0.05 mm, spacing 1e-3 relative, direction 1e-3.
    assert _refused(origin=(-180.04, -200.0, 50.0)) is None
    assert "expected origin" in str(_refused(origin=(-180.06, -200.0, 50.0)))
    assert _refused(spacing=(0.7006, 0.7, 1.25)) is None
    assert "expected spacing" in str(_refused(spacing=(0.7008, 0.7, 1.25)))
    tilted = (1.0, 0.0009, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert _refused(direction=tilted) is None
    assert "expected direction" in str(_refused(direction=(1.0, 0.002, 0, 0, 1.0, 0, 0, 0, 1.0)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"size": (64, 64, 39)}, r"expected size \(64, 64, 40\), found \(64, 64, 39\)"),
        ({"spacing": (0.7, 0.7, 2.5)}, "expected spacing"),
        ({"origin": (-180.0, -200.0, 51.25)}, "expected origin"),
        ({"direction": (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)}, "expected direction"),
    ],
)
def test_wrong_geometry_is_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(MaskError, match=f"scan s-7: lung mask: {message}"):
        _check(**change)


def test_geometry_from_sitk_image_and_a_resampled_mask_is_refused() -> None:
    image = sitk.Image(16, 12, 8, sitk.sitkInt16)
    image.SetSpacing((0.8, 0.8, 1.5))
    image.SetOrigin((1.0, 2.0, 3.0))
    scan = ScanGeometry.from_image(image)
    assert scan.size == (16, 12, 8) and scan.spacing == (0.8, 0.8, 1.5)
    mask = sitk.Image(8, 6, 4, sitk.sitkUInt8)
    mask.SetSpacing((1.6, 1.6, 3.0))
    m = ScanGeometry.from_image(mask)
    with pytest.raises(MaskError, match="expected size"):
        validate_external_mask(m.size, m.spacing, m.origin, m.direction, scan, scan_id="x",
                               kind="infection")


def test_label_map_is_split_and_lung_includes_infection() -> None:
    lung, infection = split_label_map(np.array([[[0, 1, 2, 1]]]), scan_id="s")
    assert lung.tolist() == [[[0, 1, 1, 1]]]
    assert infection.tolist() == [[[0, 0, 1, 0]]]
    assert lung.dtype == np.uint8


@pytest.mark.parametrize("values", [[0, 1, 3], [0, -1, 2], [0.5, 1.0, 0.0]])
def test_label_map_with_other_values_is_refused(values: list[float]) -> None:
    with pytest.raises(MaskError, match="scan s-3: label map: expected values 0"):
        split_label_map(np.array(values).reshape(1, 1, 3), scan_id="s-3")


@pytest.mark.parametrize("values", [[0, 255], [0, 2], [0.0, 0.5]])
def test_non_binary_mask_is_refused(values: list[float]) -> None:
    with pytest.raises(MaskError, match="expected binary values 0/1"):
        binary_mask(np.array(values).reshape(1, 1, 2), scan_id="s", kind="lung")


def test_external_masks_from_two_binary_masks() -> None:
    lung = np.array([[[1, 1, 0, 0]]], dtype=bool)
    infection = np.array([[[0, 1, 1, 0]]], dtype=np.float32)
    lung_out, inf_out = external_masks(lung, infection, scan_id="s")
    assert lung_out.tolist() == [[[1, 1, 1, 0]]]
    assert inf_out.tolist() == [[[0, 1, 1, 0]]]
    lung_out, inf_out = external_masks(np.array([[[2, 0]]]), None, scan_id="s")
    assert lung_out.tolist() == [[[1, 0]]] and inf_out.tolist() == [[[1, 0]]]


def test_conform_mask_is_one_rule_for_every_imported_mask() -> None:
    from dsan_core.segmentation.external import conform_mask

    reference = sitk.Image(4, 3, 2, sitk.sitkInt16)
    reference.SetSpacing((0.8, 0.8, 1.5))
    mask = sitk.GetImageFromArray(np.array([[[0, 1, 1, 0]] * 3] * 2, dtype=np.uint16))
    mask.CopyInformation(reference)
    out = conform_mask(mask, reference, scan_id="X-1", kind="lung")
    assert out.GetPixelID() == sitk.sitkUInt8 and out.GetSpacing() == (0.8, 0.8, 1.5)
    exported = sitk.GetImageFromArray(np.array([[[0, 255, 255, 0]] * 3] * 2, dtype=np.uint8))
    exported.CopyInformation(reference)  # 0/255: a common export, refused, never binarised
    with pytest.raises(MaskError, match=r"scan X-1: lung mask: expected binary values 0/1, "
                                        r"found \[0.0, 255.0\]") as refused:
        conform_mask(exported, reference, scan_id="X-1", kind="lung")
    assert refused.value.reason == "values"
