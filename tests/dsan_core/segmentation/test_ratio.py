from __future__ import annotations

import math

import numpy as np
import pytest

from dsan_core.errors import MaskError
from dsan_core.segmentation.metrics import dice, evaluate_segmentation
from dsan_core.segmentation.ratio import infection_ratio, voxel_ml

SPACING = (1.0, 1.0, 1.5)  # (x, y, z) mm


def _grid(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z, y, x = np.meshgrid(*(np.arange(n, dtype=float) for n in shape), indexing="ij")
    return z * SPACING[2], y * SPACING[1], x * SPACING[0]


def analytic_phantom() -> tuple[np.ndarray, np.ndarray, float, float]:
    """Two ellipsoid lungs and a sphere inside the left one; returns masks and true ml."""
    zm, ym, xm = _grid((80, 100, 160))
    axes_mm = (30.0, 40.0, 45.0)  # x, y, z semi-axes
    lung = np.zeros(zm.shape, bool)
    for cx in (42.0, 118.0):
        lung |= (((xm - cx) / axes_mm[0]) ** 2 + ((ym - 50) / axes_mm[1]) ** 2
                 + ((zm - 60) / axes_mm[2]) ** 2) <= 1
    radius = 12.0
    infection = ((xm - 42) ** 2 + (ym - 50) ** 2 + (zm - 60) ** 2) <= radius**2
    lung_ml = 2 * 4 / 3 * math.pi * math.prod(axes_mm) / 1000
    infection_ml = 4 / 3 * math.pi * radius**3 / 1000
    return lung.astype(np.uint8), infection.astype(np.uint8), lung_ml, infection_ml


def test_ratio_on_analytic_phantom_within_two_percent() -> None:
    lung, infection, lung_ml, infection_ml = analytic_phantom()
    result = infection_ratio(lung, infection, SPACING)
    assert result.lung_ml == pytest.approx(lung_ml, rel=0.02)
    assert result.infection_ml == pytest.approx(infection_ml, rel=0.02)
    assert result.infection_ratio == pytest.approx(infection_ml / lung_ml, rel=0.02)


def test_only_infection_inside_the_lung_counts() -> None:
    lung = np.zeros((1, 2, 4), np.uint8)
    lung[0, :, :2] = 1  # 4 voxels
    infection = np.zeros_like(lung)
    infection[0, 0, 1:3] = 1  # one voxel inside, one outside
    result = infection_ratio(lung, infection, (2.0, 5.0, 10.0))
    assert result.infection_ratio == 0.25
    assert result.lung_ml == pytest.approx(4 * 0.1)
    assert result.infection_ml == pytest.approx(0.1)


def test_empty_lung_raises_with_scan_id() -> None:
    empty = np.zeros((2, 2, 2), np.uint8)
    with pytest.raises(MaskError, match="scan s-01: .*no lung found"):
        infection_ratio(empty, empty, (1.0, 1.0, 1.0), scan_id="s-01")


def test_shape_mismatch_raises() -> None:
    with pytest.raises(MaskError, match="one shape"):
        infection_ratio(np.ones((2, 2, 2)), np.ones((2, 2, 3)), (1.0, 1.0, 1.0))


def test_voxel_ml() -> None:
    assert voxel_ml((0.5, 0.5, 4.0)) == pytest.approx(0.001)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 0, 0], [0, 0, 0, 0], 1.0),
        ([1, 1, 0, 0], [1, 1, 0, 0], 1.0),
        ([1, 1, 0, 0], [0, 0, 1, 1], 0.0),
        ([1, 1, 0, 0], [1, 0, 0, 0], 2 / 3),
        ([1, 0, 0, 0], [0, 0, 0, 0], 0.0),
    ],
)
def test_dice_by_hand(a: list[int], b: list[int], expected: float) -> None:
    assert dice(np.array(a).reshape(1, 2, 2), np.array(b).reshape(1, 2, 2)) == pytest.approx(
        expected
    )


def test_evaluate_segmentation_reports_ratio_errors() -> None:
    gt_lung = np.zeros((1, 1, 10), np.uint8)
    gt_lung[..., :8] = 1
    gt_inf = np.zeros_like(gt_lung)
    gt_inf[..., :2] = 1  # ratio 0.25
    pred_inf = np.zeros_like(gt_lung)
    pred_inf[..., :3] = 1  # ratio 0.375
    result = evaluate_segmentation(gt_lung, pred_inf, gt_lung, gt_inf, (1.0, 1.0, 1.0))
    assert result["lung_dice"] == 1.0
    assert result["infection_dice"] == pytest.approx(0.8)
    assert result["ratio_abs_error"] == pytest.approx(0.125)
    assert result["ratio_rel_error"] == pytest.approx(0.5)
