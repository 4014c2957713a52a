"""Phantom volumes: a realistic chest with lesions, and an analytic ellipsoid phantom.

Conventions: arrays are (z, y, x); spacings are (x, y, z) in mm (SimpleITK order);
`hu` is int16 HU, `lung` and `infection` are uint8 0/1 with infection inside lung.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from dsan_core.errors import ConfigError
from dsan_core.synthetic.anatomy import LUNG_HU, check_geometry, make_anatomy, voxel_axes
from dsan_core.synthetic.infection import Pattern, apply_lesions, plan_lesions

#: Stored CT values are HU + 1024 in 12 bits at some sites, so HU is kept in this range.
HU_MIN, HU_MAX = -1024, 3071


@dataclass(frozen=True)
class Phantom:
    """A CT volume with its ground-truth masks; see the module docstring for conventions."""

    hu: NDArray[np.int16]
    lung: NDArray[np.uint8]
    infection: NDArray[np.uint8]
    spacing: tuple[float, float, float]

    @property
    def voxel_ml(self) -> float:
        sx, sy, sz = self.spacing
        return sx * sy * sz / 1000.0

    @property
    def lung_ml(self) -> float:
        return float(np.count_nonzero(self.lung)) * self.voxel_ml

    @property
    def infection_ml(self) -> float:
        return float(np.count_nonzero(self.infection)) * self.voxel_ml

    @property
    def infection_ratio(self) -> float:
        lung = np.count_nonzero(self.lung)
        return float(np.count_nonzero(self.infection & self.lung)) / lung if lung else 0.0


def _finish(
    hu: NDArray[np.float32], rng: np.random.Generator, noise_hu: float
) -> NDArray[np.int16]:
    if noise_hu > 0:
        hu = hu + rng.normal(0.0, noise_hu, size=hu.shape).astype(np.float32)
    return np.clip(np.rint(hu), HU_MIN, HU_MAX).astype(np.int16)


def make_phantom(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
    *,
    diagnosis: Literal["COVID", "CAP"] | None,
    target_ratio: float,
    pattern: Pattern = "auto",
    noise_hu: float = 15.0,
) -> Phantom:
    """A chest CT phantom with lesions of the diagnosis' look covering `target_ratio` of lung.

    `diagnosis` None draws one of the two looks at random; `pattern` forces every
    lesion to GGO or consolidation (for tests). The achieved ratio is exact up to
    one voxel (a positive target marks at least one voxel).
    """
    if not 0.0 <= target_ratio <= 1.0:
        raise ConfigError(f"target_ratio must be in [0, 1], got {target_ratio}")
    anatomy = make_anatomy(shape, spacing, rng)
    lesions = plan_lesions(anatomy, rng, diagnosis, pattern=pattern)
    hu = anatomy.hu
    infection = apply_lesions(anatomy, hu, lesions, target_ratio, rng)
    return Phantom(
        hu=_finish(hu, rng, noise_hu),
        lung=anatomy.lung.astype(np.uint8),
        infection=(infection & anatomy.lung).astype(np.uint8),
        spacing=spacing,
    )


def ellipsoid_phantom(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    *,
    lung_radii_mm: tuple[float, float, float] = (40.0, 60.0, 50.0),
    infection_radius_mm: float = 10.0,
    gap_mm: float = 10.0,
    body_hu: float = 40.0,
    lung_hu: float = LUNG_HU,
    infection_hu: float = -500.0,
    rng: np.random.Generator | None = None,
    noise_hu: float = 0.0,
) -> Phantom:
    """Two ellipsoid lungs and one spherical infection, for exact volume checks.

    The lungs have radii `lung_radii_mm` (x, y, z), centres at x = +-(rx + gap/2)
    and y = z = 0 (the volume centre); the infection is a ball of
    `infection_radius_mm` at the right lung's (x < 0) centre. The whole volume outside
    the lungs is `body_hu`. Analytic volumes: lung 2 * 4/3 pi rx ry rz, infection
    4/3 pi r^3 (must fit inside the lung). `noise_hu` > 0 needs `rng`.
    """
    check_geometry(shape, spacing)
    rx, ry, rz = lung_radii_mm
    r = infection_radius_mm
    if min(lung_radii_mm) <= 0 or r < 0 or r > min(lung_radii_mm):
        raise ConfigError(
            f"need 0 <= infection radius <= smallest lung radius, got {r} and {lung_radii_mm}"
        )
    z, y, x = voxel_axes(shape, spacing)
    half = (x[-1] + spacing[0] / 2, y[-1] + spacing[1] / 2, z[-1] + spacing[2] / 2)
    if 2 * rx + gap_mm / 2 > half[0] or ry > half[1] or rz > half[2]:
        raise ConfigError(
            f"lungs of radii {lung_radii_mm} mm do not fit a field of view of "
            f"{tuple(2 * h for h in half)} mm (x, y, z)"
        )
    if noise_hu > 0 and rng is None:
        raise ConfigError("ellipsoid_phantom: noise_hu > 0 needs an rng")
    zz, yy, xx = z[:, None, None], y[None, :, None], x[None, None, :]
    cx = rx + gap_mm / 2
    lung = np.zeros(shape, dtype=bool)
    for s in (-1.0, 1.0):
        lung |= ((xx - s * cx) / rx) ** 2 + (yy / ry) ** 2 + (zz / rz) ** 2 <= 1.0
    infection = ((xx + cx) ** 2 + yy**2 + zz**2 <= r * r) & lung
    hu = np.full(shape, body_hu, dtype=np.float32)
    hu[lung] = lung_hu
    hu[infection] = infection_hu
    noise_rng = rng if rng is not None else np.random.default_rng(0)
    return Phantom(
        hu=_finish(hu, noise_rng, noise_hu),
        lung=lung.astype(np.uint8),
        infection=infection.astype(np.uint8),
        spacing=spacing,
    )
