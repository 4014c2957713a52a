from __future__ import annotations

import numpy as np
import pytest

from dsan_core.config import ClassicalSegConfig
from dsan_core.errors import InputError, MaskError
from dsan_core.segmentation.classical import ball, segment_classical
from dsan_core.segmentation.metrics import dice

SPACING = (2.0, 2.0, 2.0)


def chest(with_vessel: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z, y, x) 2 mm phantom: air, a +40 HU body, two -850 HU lungs, a -500 HU sphere,
    and a 2 mm +40 HU vessel running through the right lung."""
    shape = (30, 64, 72)
    z, y, x = np.meshgrid(*(np.arange(n) + 0.5 for n in shape), indexing="ij")
    hu = np.full(shape, -1000.0, np.float32)
    hu[((y - 32) / 28) ** 2 + ((x - 36) / 33) ** 2 <= 1] = 40
    lung = np.zeros(shape, bool)
    for cx in (20, 52):
        lung |= ((x - cx) / 11) ** 2 + ((y - 32) / 18) ** 2 + ((z - 15) / 12) ** 2 <= 1
    infection = ((x - 20) ** 2 + (y - 30) ** 2 + (z - 15) ** 2) <= 5**2
    hu[lung] = -850
    hu[infection] = -500
    if with_vessel:
        hu[8:22, 31, 52] = 40
    return hu, lung.astype(np.uint8), infection.astype(np.uint8)


def test_classical_finds_lungs_and_infection() -> None:
    hu, lung, infection = chest()
    lung_pred, inf_pred = segment_classical(hu, SPACING, ClassicalSegConfig(), scan_id="s-1")
    assert lung_pred.dtype == np.uint8 and lung_pred.shape == hu.shape
    assert dice(lung_pred, lung) > 0.97
    assert dice(inf_pred, infection) > 0.85
    # The vessel is inside the lung but not infection; the outside air is not lung.
    assert lung_pred[8:22, 31, 52].all() and not inf_pred[8:22, 31, 52].any()
    assert not lung_pred[:, 0, :].any()
    assert not (inf_pred & ~lung_pred.astype(bool)).any()


def test_a_body_without_lungs_raises() -> None:
    hu = np.full((10, 30, 30), -1000.0, np.float32)
    hu[:, 5:25, 5:25] = 40
    with pytest.raises(MaskError, match="scan s-2: expected a lung of at least"):
        segment_classical(hu, SPACING, ClassicalSegConfig(), scan_id="s-2")


def test_air_pockets_below_min_volume_are_not_lungs() -> None:
    hu, _, _ = chest(with_vessel=False)
    hu[hu < -400] = 40
    hu[1:4, 30:33, 34:37] = -900  # 27 voxels x 8 mm3 = 0.2 ml
    with pytest.raises(MaskError, match="no|found none"):
        segment_classical(hu, SPACING, ClassicalSegConfig(min_lung_ml=1.0), scan_id="s-3")


def test_two_dimensional_input_is_refused() -> None:
    with pytest.raises(InputError, match="3-D"):
        segment_classical(np.zeros((4, 4)), SPACING, ClassicalSegConfig(), scan_id="s")


@pytest.mark.parametrize(
    ("radius", "spacing", "shape"),
    [(2.0, (2.0, 2.0, 2.0), (3, 3, 3)), (4.0, (1.0, 1.0, 2.0), (5, 9, 9)),
     (1.0, (2.0, 2.0, 2.0), (1, 1, 1))],
)
def test_ball_extent_follows_spacing(radius: float, spacing: tuple[float, float, float],
                                     shape: tuple[int, int, int]) -> None:
    element = ball(radius, spacing)
    assert element.shape == shape
    assert element[tuple(n // 2 for n in shape)]
