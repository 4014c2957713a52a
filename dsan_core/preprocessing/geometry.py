"""Grids of the pre-processing chain and the record of the geometry used.

Conventions: arrays are (z, y, x); sizes, spacings, origins and offsets stored
here are (x, y, z) like SimpleITK, spacings in mm; a direction is the 9 numbers
of SimpleITK's row-major 3x3 matrix (its columns are the axis directions).

The chain (METHOD.md "Pre-processing") defines three grids, all sharing the
original direction and the original grid's centre:

1. resampled: spacing `config.spacing_mm`, size round(size * spacing / new spacing);
2. scaled:    spacing resampled / f (one factor f for all axes), size round(size * f);
3. final:     exactly `config.target_shape`, the scaled grid centre-cropped or
   zero-padded; final index k is scaled index k + offset (offset < 0 means padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk

from dsan_core.config import PreprocessConfig
from dsan_core.errors import InputError

Vec3 = tuple[float, float, float]
Int3 = tuple[int, int, int]
Direction = tuple[float, float, float, float, float, float, float, float, float]


@dataclass(frozen=True)
class GridGeometry:
    """Everything needed to map between the original CT grid and the final grid."""

    original_size: Int3
    original_spacing: Vec3
    original_origin: Vec3
    original_direction: Direction
    resampled_spacing: Vec3
    resampled_size: Int3
    scale_factor: float
    scaled_size: Int3
    final_spacing: Vec3
    final_size: Int3
    final_origin: Vec3
    final_direction: Direction
    #: Final index k is scaled-grid index k + offset, per axis (x, y, z).
    offset: Int3

    @property
    def crop_before(self) -> Int3:
        """Scaled-grid voxels removed before the final grid, per axis (x, y, z)."""
        return _int3(max(o, 0) for o in self.offset)

    @property
    def pad_before(self) -> Int3:
        """Padding voxels added before the scaled grid, per axis (x, y, z)."""
        return _int3(max(-o, 0) for o in self.offset)

    @property
    def final_shape(self) -> Int3:
        """The final array shape, (z, y, x)."""
        return _int3(reversed(self.final_size))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (lists and numbers only)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GridGeometry:
        """Inverse of `to_dict`."""
        values: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, list):
                is_int = key.endswith("size") or key == "offset"
                values[key] = tuple(int(v) if is_int else float(v) for v in value)
            else:
                values[key] = float(value)
        return cls(**values)


def _int3(values: Any) -> Int3:
    x, y, z = (int(v) for v in values)
    return (x, y, z)


def _vec3(values: Any) -> Vec3:
    x, y, z = (float(v) for v in values)
    return (x, y, z)


def _direction(values: Any) -> Direction:
    d = tuple(float(v) for v in values)
    if len(d) != 9:
        raise InputError(f"expected a 3x3 direction (9 numbers), found {len(d)} numbers")
    return d  # type: ignore[return-value]


def resampled_size(size: Int3, spacing: Vec3, new_spacing: Vec3) -> Int3:
    """Voxels per axis after resampling to `new_spacing`, keeping the extent."""
    return _int3(max(1, round(n * s / t)) for n, s, t in zip(size, spacing, new_spacing,
                                                              strict=True))


def compute_scale_factor(size: Int3, spacing: Vec3, config: PreprocessConfig) -> float:
    """The one scale factor for all axes: `config.scale`, or for "fit" the largest
    factor <= 1 that makes the resampled volume fit `config.target_shape` (z, y, x).

    `size` and `spacing` are those of the original CT, (x, y, z), or of the region the
    final grid frames.
    """
    if config.scale != "fit":
        return float(config.scale)
    n1 = resampled_size(size, spacing, config.spacing_mm)
    target = tuple(reversed(config.target_shape))
    return min(1.0, min(t / n for t, n in zip(target, n1, strict=True)))


@dataclass(frozen=True)
class Region:
    """A box of the original grid, voxel indices [low, high) per axis (x, y, z)."""

    low: Int3
    high: Int3


def lung_region(lung: np.ndarray, spacing: Sequence[float], margin_mm: float) -> Region | None:
    """The bounding box of the lung mask's voxels ((z, y, x) array), grown by `margin_mm`
    on every side and kept inside the grid; None for an empty mask."""
    occupied = [np.flatnonzero(np.asarray(lung).any(axis=tuple(b for b in range(3) if b != a)))
                for a in (2, 1, 0)]
    if any(o.size == 0 for o in occupied):
        return None
    n = (lung.shape[2], lung.shape[1], lung.shape[0])
    grow = [int(np.ceil(margin_mm / s)) for s in spacing]
    return Region(_int3(max(int(o[0]) - g, 0) for o, g in zip(occupied, grow, strict=True)),
                  _int3(min(int(o[-1]) + 1 + g, m)
                        for o, g, m in zip(occupied, grow, n, strict=True)))


def _centred_origin(centre: np.ndarray, direction: np.ndarray, spacing: Vec3,
                    size: Int3) -> np.ndarray:
    half = np.asarray(spacing) * (np.asarray(size, dtype=np.float64) - 1.0) / 2.0
    return centre - direction @ half


def final_grid(size: Sequence[int], spacing: Sequence[float], origin: Sequence[float],
               direction: Sequence[float], config: PreprocessConfig,
               region: Region | None = None) -> GridGeometry:
    """The geometry of every grid of the chain for a CT of this geometry (x, y, z).

    With a `region` (config.crop "lung"), the final grid is centred on the region instead
    of the scan (to the nearest voxel of the scaled grid) and "fit" fits the region.
    """
    size3, s0, o0 = _int3(size), _vec3(spacing), _vec3(origin)
    d0 = _direction(direction)
    matrix = np.asarray(d0, dtype=np.float64).reshape(3, 3)
    framed = size3 if region is None else _int3(
        h - lo for lo, h in zip(region.low, region.high, strict=True))
    factor = compute_scale_factor(framed, s0, config)
    s1 = _vec3(config.spacing_mm)
    n1 = resampled_size(size3, s0, s1)
    s2 = _vec3(s / factor for s in s1)
    n2 = _int3(max(1, round(n * factor)) for n in n1)
    target = _int3(reversed(config.target_shape))
    centre = np.asarray(o0) + matrix @ (np.asarray(s0) * (np.asarray(size3) - 1.0) / 2.0)
    o2 = _centred_origin(centre, matrix, s2, n2)
    if region is None:
        offset = _int3((n - t) // 2 for n, t in zip(n2, target, strict=True))
    else:
        # The region's centre, in scaled-grid index, at the final grid's centre.
        middle = (np.asarray(region.low) + np.asarray(region.high) - 1.0) / 2.0
        at = matrix.T @ (np.asarray(o0) + matrix @ (np.asarray(s0) * middle) - o2)
        offset = _int3(round(c / s - (t - 1) / 2.0)
                       for c, s, t in zip(at, s2, target, strict=True))
    o_final = o2 + matrix @ (np.asarray(s2) * np.asarray(offset, dtype=np.float64))
    return GridGeometry(
        original_size=size3, original_spacing=s0, original_origin=o0,
        original_direction=d0, resampled_spacing=s1, resampled_size=n1,
        scale_factor=factor, scaled_size=n2, final_spacing=s2, final_size=target,
        final_origin=_vec3(o_final), final_direction=d0, offset=offset,
    )


def resampled_origin(geometry: GridGeometry) -> Vec3:
    """Origin (x, y, z) of the intermediate resampled grid (step 1)."""
    matrix = np.asarray(geometry.original_direction).reshape(3, 3)
    size = np.asarray(geometry.original_size, dtype=np.float64)
    centre = np.asarray(geometry.original_origin) + matrix @ (
        np.asarray(geometry.original_spacing) * (size - 1.0) / 2.0)
    return _vec3(_centred_origin(centre, matrix, geometry.resampled_spacing,
                                 geometry.resampled_size))


def index_transform(from_origin: Vec3, from_spacing: Vec3, to_origin: Vec3, to_spacing: Vec3,
                    direction: Direction) -> tuple[np.ndarray, np.ndarray]:
    """(start, step) per axis (x, y, z): index k of the `to` grid sits at continuous
    index start + k * step of the `from` grid (both grids share `direction`)."""
    matrix = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    delta = matrix.T @ (np.asarray(to_origin) - np.asarray(from_origin))
    return delta / np.asarray(from_spacing), np.asarray(to_spacing) / np.asarray(from_spacing)


def map_to_original(array: np.ndarray, geometry: GridGeometry, *,
                    interpolation: Literal["linear", "nearest"] = "linear",
                    fill: float = 0.0) -> np.ndarray:
    """Map an array (z, y, x) on the final grid back onto the original CT grid.

    Attention maps: "linear"; label masks: "nearest". Voxels of the original grid
    outside the final grid get `fill`. Returns float32 (linear) or the input dtype.
    """
    if tuple(array.shape) != geometry.final_shape:
        raise InputError(f"expected an array of shape {geometry.final_shape} (z, y, x) on the "
                         f"final grid, found {tuple(array.shape)}")
    source = array.astype(np.float32) if interpolation == "linear" else array
    image = sitk.GetImageFromArray(np.ascontiguousarray(source))
    image.SetSpacing(geometry.final_spacing)
    image.SetOrigin(geometry.final_origin)
    image.SetDirection(geometry.final_direction)
    interpolator = sitk.sitkLinear if interpolation == "linear" else sitk.sitkNearestNeighbor
    mapped = sitk.Resample(image, list(geometry.original_size), sitk.Transform(), interpolator,
                           geometry.original_origin, geometry.original_spacing,
                           geometry.original_direction, fill, image.GetPixelID())
    return sitk.GetArrayFromImage(mapped)

