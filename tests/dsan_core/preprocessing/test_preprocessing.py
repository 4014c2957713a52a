"""Tests of dsan_core.preprocessing on small phantoms (z, y, x) whose answers are known."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage

from dsan_core.config import PreprocessConfig
from dsan_core.errors import InputError, MaskError
from dsan_core.preprocessing import (
    AIR_HU,
    GridGeometry,
    compute_scale_factor,
    final_grid,
    map_to_original,
    preprocess_arrays,
    preprocess_scan,
    resample_image,
    resample_mask,
    resample_two_step,
    shift_lung_median_,
    window_normalise,
)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
# x flipped, y and z kept: a direction that SimpleITK readers do produce.
FLIPPED = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
SPACING = (0.7, 0.7, 1.0)  # (x, y, z) mm
SHAPE = (40, 64, 64)  # (z, y, x)
# z cropped (40 mm / 2.5 mm = 16 -> 12), y padded (31 -> 40), x cropped (31 -> 28).
CONFIG = PreprocessConfig(target_shape=(12, 40, 28), dtype="float32")


def _physical_grid(shape: tuple[int, int, int], spacing: tuple[float, float, float]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates (mm) of the voxel centres relative to the volume centre, (z, y, x)."""
    z, y, x = (np.arange(n) - (n - 1) / 2.0 for n in shape)
    return (z[:, None, None] * spacing[2], y[None, :, None] * spacing[1],
            x[None, None, :] * spacing[0])


def _phantom(shape: tuple[int, int, int] = SHAPE, spacing: tuple[float, float, float] = SPACING
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Air, a body at 40 HU, a 'lung' at -800 HU and a 100 HU ball inside it."""
    z, y, x = _physical_grid(shape, spacing)
    hu = np.full(shape, -1000, dtype=np.int16)
    body = (y / 18.0) ** 2 + (x / 19.0) ** 2 < 1.0
    hu[np.broadcast_to(body, shape)] = 40
    lung = ((y / 14.0) ** 2 + (x / 15.0) ** 2 < 1.0) & (np.abs(z) < 15.0)
    hu[lung] = -800
    ball = (z - 2.0) ** 2 + (y + 1.0) ** 2 + (x - 3.0) ** 2 < 7.0 ** 2
    hu[ball] = 100
    return hu, lung.astype(np.uint8), ball.astype(np.uint8)


def _geometry(config: PreprocessConfig = CONFIG, direction: tuple[float, ...] = IDENTITY
              ) -> GridGeometry:
    size = (SHAPE[2], SHAPE[1], SHAPE[0])
    return final_grid(size, SPACING, (-20.0, 10.0, 5.0), direction, config)


def _centroid(weights: np.ndarray) -> np.ndarray:
    grid = np.indices(weights.shape).reshape(3, -1).astype(np.float64)
    w = weights.reshape(-1).astype(np.float64)
    return (grid * w).sum(axis=1) / w.sum()


@pytest.mark.parametrize(("hu", "expected"), [
    (-1350.0, 0.0), (-600.0, 0.5), (150.0, 1.0), (-2000.0, 0.0), (1000.0, 1.0), (-975.0, 0.25),
])
def test_window_normalise_maps_the_window_to_unit_interval(hu: float, expected: float) -> None:
    out = window_normalise(np.array([hu]), 1500.0, -600.0)
    assert out.dtype == np.float32
    assert out[0] == pytest.approx(expected, abs=1e-6)


def test_output_size_spacing_and_dtypes() -> None:
    hu, lung, infection = _phantom()
    result = preprocess_arrays(hu, lung, infection, SPACING, (0.0, 0.0, 0.0), IDENTITY,
                               CONFIG.model_copy(update={"dtype": "float16"}), scan_id="s-001")
    assert result.input.shape == result.lung.shape == result.infection.shape == (12, 40, 28)
    assert result.input.dtype == np.float16
    assert result.lung.dtype == result.infection.dtype == np.uint8
    assert result.geometry.final_spacing == pytest.approx((1.4336, 1.4336, 2.5))
    assert result.geometry.final_size == (28, 40, 12)
    assert set(np.unique(result.lung)) <= {0, 1}
    assert set(np.unique(result.infection)) == {0, 1}
    assert 0.0 <= float(result.input.min()) and float(result.input.max()) <= 1.0
    assert np.all(result.input[result.lung == 0] == 0)


def test_crop_and_pad_are_both_exercised() -> None:
    geometry = _geometry()
    assert geometry.scaled_size == (31, 31, 16)
    assert geometry.offset == (1, -5, 2)
    assert geometry.crop_before == (1, 0, 2) and geometry.pad_before == (0, 5, 0)
    hu, lung, _ = _phantom()
    image = resample_image(hu, geometry, pad=AIR_HU, antialias=True).numpy()
    # The padded y rows are air; the body reaches the cropped x and z borders.
    assert np.all(image[:, :5, :] == AIR_HU) and np.all(image[:, -4:, :] == AIR_HU)
    assert np.all(image[:, 20, 14] > -900)
    mask = resample_mask(lung, geometry)
    assert mask[:, :5, :].sum() == 0 and mask[6, 20, 14] == 1


@pytest.mark.parametrize("direction", [IDENTITY, FLIPPED])
def test_single_step_matches_two_step_reference(direction: tuple[float, ...]) -> None:
    hu, lung, infection = _phantom()
    geometry = _geometry(direction=direction)
    fast = resample_image(hu, geometry, pad=AIR_HU, antialias=True).numpy()
    reference = resample_two_step(hu, geometry, pad=AIR_HU, antialias=True)
    assert fast.shape == reference.shape == (12, 40, 28)
    difference = np.abs(fast - reference)
    assert difference.max() < 15.0  # HU, across edges of 1000 HU
    assert difference.mean() < 1.0
    windowed = np.abs(window_normalise(fast, 1500, -600) - window_normalise(reference, 1500, -600))
    assert windowed.max() < 0.01
    for mask in (lung, infection):
        two_step = resample_two_step(mask, geometry, pad=0, antialias=True, is_mask=True)
        differ = resample_mask(mask, geometry) != two_step
        # Scale 0.5 puts scaled samples exactly half-way between resampled ones:
        # such ties may round either way, so differences may only sit on edges.
        edge = ndimage.binary_dilation(two_step) & ~ndimage.binary_erosion(two_step)
        assert not np.any(differ & ~edge)
        assert differ.mean() < 0.02


def test_antialiasing_smooths_before_shrinking() -> None:
    hu = np.full(SHAPE, -1000, dtype=np.int16)
    hu[:, :, ::3] = 0  # 2.1 mm stripes: finer than the 2.9 mm the final grid can hold
    geometry = _geometry()
    smooth = resample_image(hu, geometry, pad=AIR_HU, antialias=True).numpy()
    aliased = resample_image(hu, geometry, pad=AIR_HU, antialias=False).numpy()
    inside = (slice(2, 10), slice(10, 30), slice(4, 24))
    # The (mild, scikit-image rule) Gaussian removes a third of the aliased pattern
    # and keeps the mean (-1000 * 2/3).
    assert smooth[inside].std() < 0.75 * aliased[inside].std()
    assert smooth[inside].mean() == pytest.approx(-667.0, abs=10.0)


def test_one_scale_factor_keeps_a_sphere_a_sphere() -> None:
    shape, spacing = (30, 80, 80), (0.5, 0.5, 1.5)
    z, y, x = _physical_grid(shape, spacing)
    sphere = (z ** 2 + y ** 2 + x ** 2 < 12.0 ** 2).astype(np.uint8)
    hu = np.where(sphere == 1, 100, -1000).astype(np.int16)
    config = PreprocessConfig(scale="fit", target_shape=(24, 24, 24), dtype="float32")
    result = preprocess_arrays(hu, sphere, sphere, spacing, (0.0, 0.0, 0.0), IDENTITY, config,
                               scan_id="s-002")
    spacing_final = result.geometry.final_spacing
    assert spacing_final[0] / spacing_final[2] == pytest.approx(0.7168 / 1.25)
    extents = [result.lung.any(axis=axes).sum() * spacing_final[2 - i]
               for i, axes in enumerate([(1, 2), (0, 2), (0, 1)])]
    assert max(extents) - min(extents) <= max(spacing_final) + 1e-6
    assert all(abs(e - 24.0) <= max(spacing_final) + 1e-6 for e in extents)


@pytest.mark.parametrize(("scale", "size", "spacing", "expected"), [
    (0.5, (64, 64, 40), SPACING, 0.5),
    # resampled 486 x 486 x 240 into 256 x 256 x 138: x and y limit, 256 / 486
    ("fit", (512, 512, 300), (0.68, 0.68, 1.0), 256 / 486),
    # resampled 320 x 320 x 400 (z: 500 mm): z limits, 138 / 400
    ("fit", (512, 512, 400), (0.448, 0.448, 1.25), 138 / 400),
    ("fit", (64, 64, 40), SPACING, 1.0),  # already fits: never enlarged
])
def test_compute_scale_factor(scale: float | str, size: tuple[int, int, int],
                              spacing: tuple[float, float, float], expected: float) -> None:
    config = PreprocessConfig(scale=scale, target_shape=(138, 256, 256))  # type: ignore[arg-type]
    assert compute_scale_factor(size, spacing, config) == pytest.approx(expected)


def test_bright_cube_and_its_mask_stay_aligned() -> None:
    hu = np.full(SHAPE, -800, dtype=np.int16)
    cube = np.zeros(SHAPE, dtype=np.uint8)
    cube[17:25, 25:37, 30:42] = 1
    hu[cube == 1] = 150
    lung = np.ones(SHAPE, dtype=np.uint8)
    result = preprocess_arrays(hu, lung, cube, SPACING, (0.0, 0.0, 0.0), FLIPPED, CONFIG,
                               scan_id="s-003")
    bright = np.clip(result.input.astype(np.float64) - window_normalise(np.array(-800), 1500,
                                                                         -600), 0, None)
    offset = _centroid(bright) - _centroid(result.infection)
    assert np.all(np.abs(offset) <= 0.5)


def test_map_to_original_round_trip() -> None:
    hu, lung, infection = _phantom()
    geometry = _geometry(direction=FLIPPED)
    small = resample_mask(infection, geometry)
    back = map_to_original(small.astype(np.float32), geometry) >= 0.5
    dice = 2.0 * np.sum(back & (infection == 1)) / (back.sum() + infection.sum())
    assert dice > 0.9
    nearest = map_to_original(small, geometry, interpolation="nearest")
    assert nearest.dtype == np.uint8 and nearest.shape == SHAPE


def test_geometry_json_round_trip() -> None:
    geometry = _geometry(direction=FLIPPED)
    restored = GridGeometry.from_dict(json.loads(json.dumps(geometry.to_dict())))
    assert restored == geometry


def _image(array: np.ndarray, spacing: tuple[float, ...]) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    return image


def test_preprocess_scan_accepts_matching_images() -> None:
    hu, lung, infection = _phantom()
    result = preprocess_scan(_image(hu, SPACING), _image(lung, SPACING),
                             _image(infection, SPACING), CONFIG, scan_id="s-004")
    expected = preprocess_arrays(hu, lung, infection, SPACING, (0.0, 0.0, 0.0), IDENTITY,
                                 CONFIG, scan_id="s-004")
    np.testing.assert_array_equal(result.input, expected.input)
    assert result.geometry == expected.geometry


def test_mask_with_other_spacing_is_rejected_naming_the_scan() -> None:
    hu, lung, infection = _phantom()
    with pytest.raises(MaskError, match=r"scan s-005: .*lung mask.*spacing"):
        preprocess_scan(_image(hu, SPACING), _image(lung, (0.7, 0.7, 2.0)),
                        _image(infection, SPACING), CONFIG, scan_id="s-005")


def test_mask_with_other_shape_is_rejected_naming_the_scan() -> None:
    hu, lung, infection = _phantom()
    with pytest.raises(MaskError, match=r"scan s-006: .*infection mask.*\(40, 64, 64\)"):
        preprocess_arrays(hu, lung, infection[:-1], SPACING, (0.0, 0.0, 0.0), IDENTITY, CONFIG,
                          scan_id="s-006")


def test_non_finite_ct_is_rejected() -> None:
    hu, lung, infection = _phantom()
    bad = hu.astype(np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="s-007"):
        preprocess_arrays(bad, lung, infection, SPACING, (0.0, 0.0, 0.0), IDENTITY, CONFIG,
                          scan_id="s-007")


@pytest.mark.parametrize("direction", [IDENTITY, FLIPPED])
def test_lung_crop_frames_the_lungs_and_fits_them(direction: tuple[float, ...]) -> None:
    """A lung off the scan's centre: crop "lung" centres its box on the final grid and fits
    the box (+ margin), not the scan; the mapping back to the CT still lands the masks."""
    hu, lung, infection = _phantom()
    # Move the lung (and its ball) 8 voxels right and 6 up, inside the body.
    lung, infection = (np.roll(np.roll(a, 8, axis=2), -6, axis=1) for a in (lung, infection))
    config = PreprocessConfig(target_shape=(12, 24, 24), dtype="float32", scale="fit",
                              crop="lung", lung_margin_mm=2.0)
    scan = config.model_copy(update={"crop": "scan"})
    cropped = preprocess_arrays(hu, lung, infection, SPACING, (0.0, 0.0, 0.0), direction,
                                config, scan_id="s-lung")
    whole = preprocess_arrays(hu, lung, infection, SPACING, (0.0, 0.0, 0.0), direction,
                              scan, scan_id="s-lung")
    # Finer than fitting the whole scan, and the lung fills more of the grid.
    assert cropped.geometry.scale_factor > whole.geometry.scale_factor
    assert cropped.lung.mean() > 1.5 * whole.lung.mean()
    # The lung's box is centred (within a voxel) and nothing of it is cut off.
    inside = np.argwhere(cropped.lung)
    middle = (inside.min(axis=0) + inside.max(axis=0)) / 2.0
    assert np.all(np.abs(middle - (np.array(cropped.lung.shape) - 1) / 2.0) <= 1.0)
    assert inside.min(axis=0).min() > 0
    assert np.all(inside.max(axis=0) < np.array(cropped.lung.shape) - 1)
    back = map_to_original(cropped.infection, cropped.geometry, interpolation="nearest")
    overlap = (back & infection).sum() / infection.sum()
    assert overlap > 0.8
    # An empty lung mask falls back to the whole scan.
    empty = preprocess_arrays(hu, np.zeros_like(lung), infection, SPACING, (0.0, 0.0, 0.0),
                              direction, config, scan_id="s-empty")
    assert empty.geometry == whole.geometry


def test_lung_median_shift_moves_the_scan_to_the_reference() -> None:
    hu = torch.tensor([[[-900.0, -850.0, -700.0, 40.0]]])
    lung = np.array([[[1, 1, 1, 0]]], dtype=np.uint8)
    assert shift_lung_median_(hu, lung, -800.0) == pytest.approx(50.0)
    # The median inside the lung is the reference; every voxel moved by the same shift.
    assert hu.tolist() == [[[-850.0, -800.0, -650.0, 90.0]]]
    # More lung voxels than torch.quantile takes (2**24): 200 x 512 x 512 lungs exist.
    big = torch.full((1, 1, 2 ** 24 + 2), -700.0)
    big[..., ::2] = -900.0
    assert shift_lung_median_(big, np.ones(big.shape, np.uint8), -850.0) == pytest.approx(-50.0)
    empty = torch.tensor([[[-900.0, 40.0]]])
    assert shift_lung_median_(empty, np.zeros((1, 1, 2), np.uint8), -800.0) == 0.0
    assert empty.tolist() == [[[-900.0, 40.0]]]


def test_a_sites_calibration_offset_is_gone_with_a_lung_reference() -> None:
    hu, lung, infection = _phantom()
    hu = hu.astype(np.float32)
    brighter = hu + np.float32(28.0)  # a site whose scanner reads 28 HU brighter
    geometry = ((0.0, 0.0, 0.0), IDENTITY)

    def inputs(ct: np.ndarray, config: PreprocessConfig) -> np.ndarray:
        return preprocess_arrays(ct, lung, infection, SPACING, *geometry, config,
                                 scan_id="s-005").input

    referenced = CONFIG.model_copy(update={"lung_reference_hu": -850.0})
    np.testing.assert_allclose(inputs(brighter, referenced), inputs(hu, referenced), atol=1e-5)
    assert not np.allclose(inputs(brighter, CONFIG), inputs(hu, CONFIG), atol=1e-3)
    # The lung's median sits at the reference: (-850 + 1350) / 1500 in window units.
    ready = preprocess_arrays(hu, lung, infection, SPACING, *geometry, referenced,
                              scan_id="s-005")
    inside = ready.input[ready.lung != 0]
    assert float(np.median(inside)) == pytest.approx(500.0 / 1500.0, abs=1e-4)


def test_the_lung_reference_off_keeps_the_fingerprint_it_had_before() -> None:
    import hashlib

    payload = CONFIG.model_dump(mode="json")
    del payload["lung_reference_hu"]
    before = hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":"))
                            .encode()).hexdigest()[:16]
    assert CONFIG.fingerprint() == before
    assert CONFIG.model_copy(update={"lung_reference_hu": -850.0}).fingerprint() != before
    with pytest.raises(ValueError, match="lung_reference_hu"):
        PreprocessConfig(lung_reference_hu=40.0)
