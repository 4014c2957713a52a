"""Pre-process one scan: CT and masks onto the final grid, windowed and masked.

Arrays are (z, y, x); spacing, origin and direction are (x, y, z) SimpleITK order,
spacings in mm, CT in HU. See METHOD.md "Pre-processing".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from dsan_core.config import PreprocessConfig
from dsan_core.errors import InputError, MaskError
from dsan_core.grid import ScanGeometry, check_same_grid
from dsan_core.preprocessing.geometry import GridGeometry, final_grid, lung_region
from dsan_core.preprocessing.intensity import (
    AIR_HU,
    mask_outside_lung_,
    shift_lung_median_,
    window_normalise_,
)
from dsan_core.preprocessing.resample import resample_image, resample_mask


@dataclass(frozen=True)
class PreprocessedScan:
    """The network input and masks on the final grid, (z, y, x) = target_shape."""

    #: Windowed CT in [0, 1] times the lung mask; float16 or float32 per config.dtype.
    input: np.ndarray
    lung: np.ndarray  # uint8, 0/1
    infection: np.ndarray  # uint8, 0/1
    geometry: GridGeometry


def _check_volume(name: str, array: np.ndarray, scan_id: str) -> None:
    if array.ndim != 3:
        raise InputError(f"expected a 3-D {name} (z, y, x), found {array.ndim} dimensions",
                         scan=scan_id)
    if min(array.shape) < 1:
        raise InputError(f"expected a non-empty {name}, found shape {array.shape}", scan=scan_id)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise InputError(f"expected a numeric {name}, found dtype {array.dtype}", scan=scan_id)


def _check_mask(name: str, mask: np.ndarray, shape: tuple[int, ...], scan_id: str) -> None:
    _check_volume(name, mask, scan_id)
    if mask.shape != shape:
        raise MaskError(f"expected the {name} to have the CT's shape {shape} (z, y, x), "
                        f"found {mask.shape}", scan=scan_id, reason="geometry")
    if np.issubdtype(mask.dtype, np.floating) and not np.isfinite(mask).all():
        raise MaskError(f"expected finite {name} values, found NaN or inf", scan=scan_id,
                        reason="values")


def _check_same_geometry(name: str, ct: sitk.Image, mask: sitk.Image, scan_id: str) -> None:
    check_same_grid(ScanGeometry.from_image(mask), ScanGeometry.from_image(ct), scan_id=scan_id,
                    kind=name.removesuffix(" mask"))


def preprocess_scan(hu: sitk.Image, lung: sitk.Image, infection: sitk.Image,
                    config: PreprocessConfig, *, scan_id: str) -> PreprocessedScan:
    """Pre-process a CT (HU) and its lung and infection masks given as SimpleITK images."""
    for name, image in (("CT", hu), ("lung mask", lung), ("infection mask", infection)):
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(f"expected a 3-D scalar {name}, found {image.GetDimension()}-D with "
                             f"{image.GetNumberOfComponentsPerPixel()} components", scan=scan_id)
    _check_same_geometry("lung mask", hu, lung, scan_id)
    _check_same_geometry("infection mask", hu, infection, scan_id)
    return preprocess_arrays(
        sitk.GetArrayViewFromImage(hu), sitk.GetArrayViewFromImage(lung),
        sitk.GetArrayViewFromImage(infection), hu.GetSpacing(), hu.GetOrigin(),
        hu.GetDirection(), config, scan_id=scan_id)


def preprocess_arrays(hu_array: np.ndarray, lung_array: np.ndarray, infection_array: np.ndarray,
                      spacing: Sequence[float], origin: Sequence[float],
                      direction: Sequence[float], config: PreprocessConfig, *,
                      scan_id: str) -> PreprocessedScan:
    """Pre-process arrays (z, y, x) with the CT's spacing/origin/direction (x, y, z).

    The masks must lie on the CT's grid; any non-zero mask value counts as inside.
    """
    _check_volume("CT", hu_array, scan_id)
    _check_mask("lung mask", lung_array, hu_array.shape, scan_id)
    _check_mask("infection mask", infection_array, hu_array.shape, scan_id)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InputError(f"expected 3 positive spacings (x, y, z) mm, found {tuple(spacing)}",
                         scan=scan_id)
    if np.issubdtype(hu_array.dtype, np.floating) and not np.isfinite(hu_array).all():
        raise InputError("expected finite HU values, found NaN or inf", scan=scan_id)
    size = (int(hu_array.shape[2]), int(hu_array.shape[1]), int(hu_array.shape[0]))
    region = (lung_region(lung_array, tuple(spacing), config.lung_margin_mm)
              if config.crop == "lung" else None)
    geometry = final_grid(size, tuple(spacing), tuple(origin), tuple(direction), config, region)
    image = resample_image(hu_array, geometry, pad=AIR_HU, antialias=config.antialias)
    lung_final = (resample_mask(lung_array, geometry) != 0).astype(np.uint8)
    infection_final = (resample_mask(infection_array, geometry) != 0).astype(np.uint8)
    if config.lung_reference_hu is not None:
        shift_lung_median_(image, lung_final, config.lung_reference_hu)
    window_normalise_(image, config.window_width, config.window_level)
    mask_outside_lung_(image, lung_final)
    return PreprocessedScan(input=image.numpy().astype(config.dtype), lung=lung_final,
                            infection=infection_final, geometry=geometry)
