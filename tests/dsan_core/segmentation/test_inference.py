from __future__ import annotations

import numpy as np
import pytest
import torch

from dsan_core.config import SegmentationConfig, VBNetConfig
from dsan_core.plots import overlay_figure
from dsan_core.segmentation.inference import (
    HU_WINDOW,
    network_shape,
    postprocess_masks,
    segment_volume,
    sliding_window_probs,
)
from dsan_core.segmentation.metrics import dice
from dsan_core.segmentation.reporting import StandInSegmenter, score_held_out_scan
from dsan_core.segmentation.vbnet import build_vbnet

torch.set_num_threads(1)
CONFIG = VBNetConfig(base_width=4, depth=3, spacing_mm=(6.0, 6.0, 6.0), patch_size=(8, 16, 16),
                     overlap=0.5, mixed_precision=False)
CPU = torch.device("cpu")


def _scaled(hu: float) -> float:
    return (hu - HU_WINDOW[0]) / (HU_WINDOW[1] - HU_WINDOW[0])


class IntensityOracle(torch.nn.Module):
    """Classifies each voxel by its intensity alone: air/body -> 0, -850 -> 1, -500 -> 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def bump(hu: float) -> torch.Tensor:
            return -(((x - _scaled(hu)) / 0.05) ** 2)

        background = torch.maximum(bump(-1000.0), bump(40.0))
        return torch.cat([background, bump(-850.0), bump(-500.0)], dim=1)


def phantom(shape: tuple[int, int, int], spacing: tuple[float, float, float], *, body: bool = True
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two ellipsoid lungs (-850 HU) in a +40 HU body, a -500 HU sphere in the left lung."""
    z, y, x = np.meshgrid(*(np.arange(n) + 0.5 for n in shape), indexing="ij")
    zm, ym, xm = z * spacing[2], y * spacing[1], x * spacing[0]
    cz, cy, cx = (n * s / 2 for n, s in zip(shape, spacing[::-1], strict=True))
    hu = np.full(shape, -1000.0, np.float32)
    hu[body & (((ym - cy) / (0.45 * 2 * cy)) ** 2 + ((xm - cx) / (0.45 * 2 * cx)) ** 2 <= 1)] = 40
    lung = np.zeros(shape, bool)
    for side in (-1, 1):
        lung |= (((xm - cx - side * 0.2 * 2 * cx) / (0.15 * 2 * cx)) ** 2
                 + ((ym - cy) / (0.3 * 2 * cy)) ** 2 + ((zm - cz) / (0.4 * 2 * cz)) ** 2) <= 1
    infection = lung & ((xm - cx + 0.2 * 2 * cx) ** 2 + (ym - cy) ** 2 + (zm - cz) ** 2
                        <= (0.1 * 2 * cx) ** 2)
    hu[lung] = -850
    hu[infection] = -500
    return hu, lung.astype(np.uint8), infection.astype(np.uint8)


@pytest.mark.parametrize(
    ("shape", "spacing"),
    [((20, 40, 36), (3.0, 3.0, 3.0)),  # larger than a patch: several windows
     ((5, 9, 11), (6.0, 6.0, 6.0)),  # smaller than a patch: padded
     ((30, 24, 24), (5.0, 5.0, 2.5))],  # anisotropic
)
def test_segment_volume_returns_the_input_shape(shape: tuple[int, int, int],
                                                spacing: tuple[float, float, float]) -> None:
    torch.manual_seed(0)
    model = build_vbnet(CONFIG)
    hu = np.random.default_rng(0).normal(-500, 300, shape).astype(np.float32)
    lung, infection = segment_volume(model, hu, spacing, CONFIG, CPU)
    assert lung.shape == infection.shape == shape
    assert lung.dtype == infection.dtype == np.uint8
    assert not (infection & ~lung.astype(bool)).any()


def test_sliding_window_probs_sum_to_one_and_match_the_image_shape() -> None:
    torch.manual_seed(0)
    image = np.random.default_rng(1).random((12, 20, 40)).astype(np.float32)
    probs = sliding_window_probs(build_vbnet(CONFIG), image, CONFIG, CPU)
    assert probs.shape == (3, 12, 20, 40)
    assert torch.allclose(probs.sum(dim=0), torch.ones(12, 20, 40), atol=1e-5)


def test_an_oracle_network_recovers_the_phantom_in_the_original_grid() -> None:
    # Exercises resampling there and back, window blending and the argmax alignment.
    # No body: linear interpolation between lung and body would pass through -500 HU.
    spacing = (3.0, 3.0, 2.0)
    hu, lung, infection = phantom((48, 64, 64), spacing, body=False)
    lung_pred, inf_pred = segment_volume(IntensityOracle(), hu, spacing, CONFIG, CPU)
    assert dice(lung_pred, lung) > 0.95
    assert dice(inf_pred, infection) > 0.9


def test_network_shape_follows_spacing() -> None:
    assert network_shape((96, 128, 128), (2.8125, 2.8125, 1.25), (3.0, 3.0, 3.0)) == (40, 120, 120)


def test_postprocess_keeps_two_lungs_fills_holes_and_nests_infection() -> None:
    lung = np.zeros((3, 12, 20), np.uint8)
    lung[:, 2:10, 1:8] = 1  # left lung, 168 voxels
    lung[:, 2:10, 11:18] = 1  # right lung
    lung[1, 5, 4] = 0  # a vessel hole
    lung[1, 0, 19] = 1  # a speck outside
    infection = np.zeros_like(lung)
    infection[1, 5, 4] = 1  # inside the hole: kept, lung grows to include it
    infection[1, 11, 0] = 1  # far from any lung: dropped
    lung_out, inf_out = postprocess_masks(lung, infection)
    expected_lung = np.zeros_like(lung)
    expected_lung[:, 2:10, 1:8] = 1
    expected_lung[:, 2:10, 11:18] = 1
    assert np.array_equal(lung_out, expected_lung)
    assert inf_out.sum() == 1 and inf_out[1, 5, 4] == 1


def test_postprocess_drops_a_tiny_second_component() -> None:
    lung = np.zeros((1, 10, 30), np.uint8)
    lung[0, 1:9, 1:20] = 1
    lung[0, 4:6, 25:27] = 1  # 4 voxels < 10 % of 152
    lung_out, _ = postprocess_masks(lung, np.zeros_like(lung))
    assert lung_out.sum() == 8 * 19


def test_overlay_figure_has_axial_and_coronal_panels() -> None:
    hu, lung, infection = phantom((16, 32, 32), (6.0, 6.0, 3.0))
    figure = overlay_figure(hu, lung, infection, (6.0, 6.0, 3.0), title="scan s-1")
    titles = [axes.get_title() for axes in figure.axes]
    assert titles[0].startswith("axial") and titles[1].startswith("coronal")
    assert figure.axes[1].get_aspect() == pytest.approx(0.5)


def test_postprocess_does_not_fill_the_diaphragm_dome() -> None:
    # A dome: lung all around a soft-tissue cap that opens to the bottom slice.
    # Each low axial slice shows a ring; only a slice-wise fill would close it.
    z, y, x = np.mgrid[0:20, 0:40, 0:40]
    lung = ((y - 20) ** 2 + (x - 20) ** 2 <= 15**2).astype(np.uint8)
    dome = (y - 20) ** 2 + (x - 20) ** 2 + (z * 1.5) ** 2 <= 10**2
    lung[dome] = 0
    enclosed = (z - 14) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= 2**2  # a vessel inside
    lung[enclosed] = 0
    out_lung, _ = postprocess_masks(lung, np.zeros_like(lung))
    assert not out_lung[dome].any()
    assert out_lung[enclosed].all()


def test_masks_from_probs_thresholds_infection_inside_the_lung() -> None:
    from dsan_core.segmentation.inference import masks_from_probs

    probs = torch.tensor([[0.7, 0.4, 0.2, 0.6],   # background
                          [0.1, 0.4, 0.5, 0.1],   # lung
                          [0.2, 0.2, 0.3, 0.3]])[:, :, None, None]  # infection
    lung, infection = masks_from_probs(probs, 0.25)
    assert lung[:, 0, 0].tolist() == [False, True, True, False]
    # Voxel 3 has p_infection 0.3 > 0.25 but is background-majority: not infection.
    assert infection[:, 0, 0].tolist() == [False, False, True, False]
    assert masks_from_probs(probs)[1].sum() == 0  # 0.5: the majority rule


def test_a_held_out_scan_is_scored_for_its_method_the_standin_and_the_baseline() -> None:
    spacing = (3.0, 3.0, 2.0)
    hu, lung, infection = phantom((48, 64, 64), spacing, body=False)
    config = SegmentationConfig(method="ground_truth", vbnet=CONFIG)
    rows, problem = score_held_out_scan("scan", hu, spacing, (lung, infection),
                                        (lung, infection), config,
                                        StandInSegmenter(IntensityOracle(), 0.5, CPU))
    scores = {row["method"]: row for row in rows}
    # The classical baseline finds no body in this phantom: reported, not fatal.
    assert set(scores) == {"ground_truth", "vbnet"} and problem
    assert scores["ground_truth"]["lung_dice"] == 1.0
    assert float(scores["vbnet"]["lung_dice"]) > 0.95  # type: ignore[arg-type]
    assert float(scores["vbnet"]["infection_dice"]) > 0.9  # type: ignore[arg-type]
    # Without a stand-in only the method and the baseline are scored.
    alone, again = score_held_out_scan("scan", hu, spacing, (lung, infection),
                                       (lung, infection), config)
    assert [row["method"] for row in alone] == ["ground_truth"] and again == problem
    # In a body the baseline runs and is scored beside the method.
    hu, lung, infection = phantom((48, 64, 64), spacing)
    with_body, none = score_held_out_scan("scan", hu, spacing, (lung, infection),
                                          (lung, infection), config)
    assert [row["method"] for row in with_body] == ["ground_truth", "classical"]
    assert none is None
